"""The local weights cache: status, import, removal, and weights a user trained.

Nothing here touches the network. User weights are registered by path and SHA-256 in
`<cache>/weights/user_weights.json`; the file itself stays where the user keeps it.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import ConfigError, WeightsError
from ..hashing import git_blob_sha1, sha256_file
from ..outputs.files import atomic_file, atomic_write_text
from ..settings import Settings
from .cache import USER_FILE, sample_path, samples_cache_dir, user_weights_file, weights_cache_dir
from .registry import Entry, Registry

__all__ = ["USER_FILE", "UserWeights", "WeightStatus", "as_dict", "find_user_weights",
           "import_file", "register_user_weights", "remove", "status",
           "unregister_user_weights", "user_weights", "verify_user_weights"]


@dataclass(frozen=True)
class WeightStatus:
    name: str
    alias: str | None
    role: str
    licence: str
    path: str
    cached: bool
    verified: bool | None  # None: not checked (not cached, or verification skipped)
    size: int | None


@dataclass(frozen=True)
class UserWeights:
    name: str
    path: str
    sha256: str


def status(entry: Entry, *, verify: bool = True, settings: Settings | None = None) -> WeightStatus:
    """Cached? verified? of one official file; hashing is local (a few hundred ms for all five)."""
    path = weights_cache_dir(settings) / entry.name
    cached = path.is_file()
    return WeightStatus(
        name=entry.name, alias=entry.alias, role=entry.role, licence=entry.licence,
        path=str(path), cached=cached,
        verified=(git_blob_sha1(path) == entry.git_sha1) if cached and verify else None,
        size=path.stat().st_size if cached else None,
    )


def _atomic_copy(source: Path, target: Path) -> None:
    """Copy via the package's atomic writer: a crash never leaves a partial file in the cache."""
    with atomic_file(target) as out, source.open("rb") as src:
        shutil.copyfileobj(src, out, 1 << 20)


def import_file(source: Path, registry: Registry, *,
                settings: Settings | None = None) -> tuple[Entry, Path]:
    """Copy a file obtained elsewhere into the cache, if its bytes are an official file (weights
    or a sample image). Matched by git blob SHA-1, so a renamed file is still recognised."""
    if not source.is_file():
        raise WeightsError(f"{source} does not exist or is not a file")
    got = git_blob_sha1(source)
    match = next((e for e in registry.weights if e.git_sha1 == got), None)
    if match is not None:
        target = weights_cache_dir(settings) / match.name
    else:
        match = next((e for e in registry.samples if e.git_sha1 == got), None)
        if match is None:
            raise WeightsError(
                f"{source} is not one of the official weight files (its git blob SHA-1 {got} "
                f"matches no entry of registry {registry.source})",
                hint="to use weights you trained, run `mammocli weights register NAME PATH` or "
                     "pass --weights-dir",
            )
        target = sample_path(match, samples_cache_dir(settings))
    _atomic_copy(source, target)
    # Re-check the copy: the source could have changed while we read it.
    if git_blob_sha1(target) != match.git_sha1:
        target.unlink(missing_ok=True)
        raise WeightsError(f"{source} changed while it was imported; nothing was cached")
    return match, target


def remove(entry: Entry, *, settings: Settings | None = None) -> bool:
    path = weights_cache_dir(settings) / entry.name
    if path.is_file():
        path.unlink()
        return True
    return False


# --- weights a user trained --------------------------------------------------------------------

def user_weights(settings: Settings | None = None) -> dict[str, UserWeights]:
    path = user_weights_file(settings)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text("utf-8"))
        return {name: UserWeights(name=name, path=item["path"], sha256=item["sha256"])
                for name, item in data.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise WeightsError(f"{path} is damaged: {exc}",
                           hint="delete it and register your weights again") from None


def _write_user(items: dict[str, UserWeights], settings: Settings | None) -> None:
    atomic_write_text(user_weights_file(settings), json.dumps(
        {k: {"path": v.path, "sha256": v.sha256} for k, v in sorted(items.items())}, indent=2))


def find_user_weights(name: str, settings: Settings | None = None) -> UserWeights | None:
    return user_weights(settings).get(name)


def register_user_weights(name: str, path: Path, registry: Registry, *,
                          settings: Settings | None = None) -> UserWeights:
    """Record weights a user trained under `name`, with the SHA-256 they have now."""
    if any(name in (e.name, e.alias) for e in registry.weights):
        raise ConfigError(f"{name!r} is the name of an official weights file; choose another")
    if not path.is_file():
        raise WeightsError(f"{path} does not exist or is not a file")
    item = UserWeights(name=name, path=str(path.resolve()), sha256=sha256_file(path))
    items = user_weights(settings)
    items[name] = item
    _write_user(items, settings)
    return item


def unregister_user_weights(name: str, settings: Settings | None = None) -> bool:
    items = user_weights(settings)
    if items.pop(name, None) is None:
        return False
    _write_user(items, settings)
    return True


def verify_user_weights(item: UserWeights) -> Path:
    """The path of registered user weights, if the file still has its recorded SHA-256."""
    path = Path(item.path)
    if not path.is_file():
        raise WeightsError(f"registered weights {item.name!r}: {path} no longer exists",
                           hint=f"register it again: mammocli weights register {item.name} PATH")
    got = sha256_file(path)
    if got != item.sha256:
        raise WeightsError(
            f"registered weights {item.name!r} ({path}) changed since registration: expected "
            f"SHA-256 {item.sha256}, got {got}",
            hint=f"if the change is intended, register it again: "
                 f"mammocli weights register {item.name} {path}",
        )
    return path


def as_dict(obj: WeightStatus | UserWeights) -> dict[str, object]:
    return asdict(obj)
