"""`mammocli weights ...`: list, download, verify, path, import, remove, register, help.

Results (JSON) go to stdout; tables, progress and messages to stderr.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..console import cell, say, stderr
from ..errors import WeightsError
from ..weights import cache, fetch, store
from ..weights.guide import GUIDE, GUIDE_COMMAND
from ..weights.registry import Entry, Registry, load_registry
from .common import handle_errors, write_stdout

weights_app = typer.Typer(
    name="weights",
    help="Manage the model weights: the official NYU files (AGPL-3.0, downloaded and verified on "
         "first use) and weights you trained.",
    no_args_is_help=True,
)


def _select(registry: Registry, names: list[str] | None) -> list[Entry]:
    return registry.select(names)


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n} B"


def _json(obj: object) -> None:
    write_stdout(json.dumps(obj, indent=2))


@weights_app.command("list")
@handle_errors
def list_(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON on stdout instead of a table.")
    ] = False,
    no_verify: Annotated[
        bool, typer.Option("--no-verify", help="Skip hashing the cached files.")
    ] = False,
) -> None:
    """Show each weights file: role, cached?, verified?, size, path, licence (no download)."""
    registry = load_registry()
    rows = [store.status(e, verify=not no_verify) for e in registry.weights]
    users = store.user_weights()
    if as_json:
        _json({"official": [store.as_dict(r) for r in rows],
               "user": [store.as_dict(u) for u in users.values()]})
        return
    header = ("name", "role", "cached", "verified", "size", "path", "licence")
    lines: list[tuple[str, ...]] = []
    for r in rows:
        verified = "-" if r.verified is None else ("yes" if r.verified else "NO")
        lines.append((r.alias or r.name, r.role, "yes" if r.cached else "no", verified,
                      _size(r.size), r.path, r.licence))
    for u in users.values():
        exists = Path(u.path).is_file()
        lines.append((u.name, "user-registered", "yes" if exists else "missing", "sha256",
                      _size(Path(u.path).stat().st_size if exists else None), u.path, "yours"))
    if not stderr.is_terminal:
        # Piped or logged: one tab-separated line per file, never cut to a width.
        for fields in (header, *lines):
            typer.echo("\t".join(fields), err=True)  # not rich: it would expand the tabs
        return
    table = Table(title="weights", title_justify="left")
    for col in header:
        table.add_column(col, overflow="fold")  # wrap long names and paths, never "…"
    for fields in lines:
        table.add_row(*map(cell, fields))
    stderr.print(table)


@weights_app.command("download")
@handle_errors
def download(
    names: Annotated[
        list[str] | None, typer.Argument(
            help="Names, aliases or a family: dmv-cnn (its five files) or gmic (the five "
                 "GMIC members). Default: all.")
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar or messages.")
    ] = False,
) -> None:
    """Fetch and verify weights now (e.g. in a Docker build), instead of on first use."""
    registry = load_registry()
    out = []
    for entry in _select(registry, names):
        path = fetch.resolve_weights(entry.name, progress=not quiet, registry=registry)
        if not quiet:
            say(f"ok {entry.name} -> {path}")
        out.append({"name": entry.name, "path": str(path), "git_sha1": entry.git_sha1})
    _json(out)


@weights_app.command("verify")
@handle_errors
def verify(
    names: Annotated[
        list[str] | None, typer.Argument(help="Names or aliases (default: all).")
    ] = None,
) -> None:
    """Re-hash the cached files and registered user weights. Exit 4 if any fails, if a file
    named is not cached, or if nothing is cached at all (the JSON on stdout lists each file)."""
    registry = load_registry()
    users = store.user_weights()
    official = [n for n in names or [] if n not in users]
    rows = [store.status(e) for e in _select(registry, official)] if official or not names else []
    bad = [r.name for r in rows if r.verified is False]
    report: list[dict[str, object]] = [store.as_dict(r) for r in rows]
    for r in rows:
        state = "not cached" if not r.cached else "ok" if r.verified else "FAILED"
        say(f"{state:10} {r.name}")
    checked = sum(r.cached for r in rows)  # files actually hashed
    for user in users.values():
        if names and user.name not in names:
            continue
        try:
            store.verify_user_weights(user)
            ok = True
        except WeightsError as exc:
            say(str(exc))
            ok = False
        report.append({**store.as_dict(user), "verified": ok})
        say(f"{'ok' if ok else 'FAILED':10} {user.name} (user)")
        checked += 1
        if not ok:
            bad.append(user.name)
    _json(report)
    if bad:
        raise WeightsError(f"verification failed: {', '.join(bad)}",
                           hint="remove and download again: mammocli weights remove NAME && "
                                "mammocli weights download NAME")
    missing = [r.name for r in rows if not r.cached]
    if names and missing:
        raise WeightsError(f"not cached, so not verified: {', '.join(missing)}",
                           hint=f"fetch them with `mammocli weights download "
                                f"{' '.join(missing)}`, or import copies with `mammocli weights "
                                f"import FILE...` (offline: `{GUIDE_COMMAND}`)")
    if not checked:
        raise WeightsError(
            f"nothing to verify: no weights are cached in {cache.weights_cache_dir()} and none "
            "are registered",
            hint=f"fetch them with `mammocli weights download` (or one family: `mammocli "
                 f"weights download dmv-cnn`), or import copies with `mammocli weights import "
                 f"FILE...`; offline: `{GUIDE_COMMAND}`")


@weights_app.command("help")
def help_() -> None:
    """How to get the weights without the internet: --weights-dir, a mirror
    (MAMMOCLI_WEIGHTS_URL), `weights import` + MAMMOCLI_OFFLINE, a prepared cache."""
    write_stdout(GUIDE)


@weights_app.command("path")
@handle_errors
def path(
    name: Annotated[
        str | None, typer.Argument(help="A weights name; default: the cache folder.")
    ] = None,
) -> None:
    """Print the cache folder, or where a weights file is (or will be) cached."""
    if name is None:
        write_stdout(str(cache.weights_cache_dir()))
        return
    user = store.find_user_weights(name)
    if user is not None:
        write_stdout(user.path)
        return
    write_stdout(str(cache.weights_cache_dir() / load_registry().weight(name).name))


@weights_app.command("import")
@handle_errors
def import_(
    files: Annotated[list[Path], typer.Argument(help="Official weight files obtained elsewhere.")],
) -> None:
    """Copy official weight files into the cache, after checking their hashes (for offline use)."""
    registry = load_registry()
    out = []
    for file in files:
        entry, target = store.import_file(file, registry)
        say(f"imported {file} as {entry.name} -> {target}")
        out.append({"name": entry.name, "path": str(target), "git_sha1": entry.git_sha1})
    _json(out)


@weights_app.command("remove")
@handle_errors
def remove(
    names: Annotated[
        list[str] | None, typer.Argument(help="Names (official or user-registered).")
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Remove every cached official file.")] = False,
) -> None:
    """Delete cached official files, or forget user-registered weights (their file is kept)."""
    if not names and not all_:
        raise typer.BadParameter("give NAME... or --all")
    registry = load_registry()
    removed: list[str] = []
    if all_:
        removed += [e.name for e in registry.weights if store.remove(e)]
    for name in names or []:
        if store.unregister_user_weights(name):
            removed.append(name)
        elif store.remove(registry.weight(name)):
            removed.append(registry.weight(name).name)
    for name in removed:
        say(f"removed {name}")
    _json({"removed": removed})


@weights_app.command("register")
@handle_errors
def register_(
    name: Annotated[str, typer.Argument(help="A name for your weights, e.g. my-finetuned-patch.")],
    file: Annotated[Path, typer.Argument(help="The weights file (it stays where it is).")],
) -> None:
    """Register weights you trained by path and SHA-256; results that use them record the hash."""
    item = store.register_user_weights(name, file, load_registry())
    say(f"registered {item.name}: {item.path} (sha256 {item.sha256})")
    _json(store.as_dict(item))


def register(app: typer.Typer) -> None:
    app.add_typer(weights_app, name="weights")
