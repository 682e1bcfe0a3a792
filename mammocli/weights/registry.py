"""The registry of official files: the NYU weights and the authors' sample exams.

The data lives in `registry.json` (shipped in the wheel). A manifest with the same schema can
replace it (`MAMMOCLI_REGISTRY=path.json` or `load_registry(path)`), so tests and sites can register
their own files with their hashes. Every entry is verified by its git blob SHA-1, which is what
`git ls-tree` lists, so the hashes can be checked against the authors' repository without trusting
any mirror.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import ConfigError, WeightsError
from ..hashing import git_blob_sha1, sha256_file
from ..settings import DEFAULT_WEIGHTS_URL, load_settings
from ..vocabulary import PATCH_WEIGHTS, WEIGHT_FILES, Family, ModelKind, Variant, weight_file

__all__ = ["Entry", "Registry", "builtin_registry", "git_blob_sha1", "load_registry",
           "sha256_file"]  # the hash helpers stay importable from here

_HEX40 = re.compile(r"[0-9a-f]{40}")
_HEX64 = re.compile(r"[0-9a-f]{64}")

# The five official weight files, by role (the names come from the one table in vocabulary).
PATCH = PATCH_WEIGHTS
VIEW_IMAGE = weight_file(ModelKind.VIEW_WISE, Variant.IMAGE_ONLY)
VIEW_IMAGEHEATMAPS = weight_file(ModelKind.VIEW_WISE, Variant.IMAGE_AND_HEATMAPS)
IMAGE_IMAGE = weight_file(ModelKind.IMAGE_WISE, Variant.IMAGE_ONLY)
IMAGE_IMAGEHEATMAPS = weight_file(ModelKind.IMAGE_WISE, Variant.IMAGE_AND_HEATMAPS)


def family_files(family: Family) -> tuple[str, ...]:
    """A family's official weight files: what `weights download <family>` fetches."""
    extra = (PATCH_WEIGHTS,) if family is Family.DMV_CNN else ()
    return extra + tuple(name for (f, _, _), name in WEIGHT_FILES.items() if f is family)


@dataclass(frozen=True)
class Entry:
    """One downloadable file."""

    name: str  # canonical name = file name on disk
    path: str  # path relative to the base URL, e.g. "models/sample_patch_model.p"
    git_sha1: str
    licence: str
    role: str = ""
    alias: str | None = None  # short name for the CLI, e.g. "patch"
    model: str = ""  # the architecture the file fits, for humans
    exam: str | None = None  # samples: the exam folder the file belongs in
    # Files of another repository than the registry's (GMIC): its own pinned base URL.
    base_url: str | None = None
    repository: str | None = None
    commit: str | None = None
    # Checked too where known (the GMIC files: size and SHA-256 from their old LFS pointers).
    size: int | None = None
    sha256: str | None = None

    def url(self, base_url: str) -> str:
        return base_url.rstrip("/") + "/" + self.path.lstrip("/")


@dataclass(frozen=True)
class Registry:
    weights: tuple[Entry, ...]
    samples: tuple[Entry, ...]
    base_url: str  # where `path`s are resolved when MAMMOCLI_WEIGHTS_URL is not set
    commit: str | None = None
    repository: str | None = None
    source: str = "builtin"  # "builtin" or the manifest path, for messages

    def weight(self, name: str) -> Entry:
        """Look a weight file up by its name or alias."""
        for entry in self.weights:
            if name in (entry.name, entry.alias):
                return entry
        known = ", ".join(e.alias or e.name for e in self.weights)
        raise WeightsError(f"unknown weights {name!r} in registry {self.source}",
                           hint=f"known weights: {known}")

    def select(self, names: list[str] | None) -> list[Entry]:
        """Entries by name, alias or family (`gmic` = gmic-1 ... gmic-5, `dmv-cnn` = its five
        files), in the order given, each once; no names: every entry."""
        if not names:
            return list(self.weights)
        chosen: dict[str, Entry] = {}
        families = {f.value: f for f in Family}
        for name in names:
            if name in families and not any(name in (e.name, e.alias) for e in self.weights):
                group = [e for e in self.weights if e.name in family_files(families[name])]
                if not group:
                    raise WeightsError(f"registry {self.source} lists no {name} weights",
                                       hint="use the shipped registry, or list the files")
                chosen.update((e.name, e) for e in group)
            else:
                entry = self.weight(name)
                chosen[entry.name] = entry
        return list(chosen.values())

    def url(self, entry: Entry, base_url: str | None = None) -> str:
        """The download URL; a mirror (MAMMOCLI_WEIGHTS_URL) replaces the base, keeping the path."""
        return entry.url(base_url or entry.base_url or self.base_url)


def verification_problem(entry: Entry, path: Path) -> str | None:
    """None if `path` holds the entry's bytes: size, git blob SHA-1 and SHA-256 where known."""
    size = path.stat().st_size
    if entry.size is not None and size != entry.size:
        return f"expected {entry.size} bytes, got {size}"
    got = git_blob_sha1(path)
    if got != entry.git_sha1:
        return f"expected git blob SHA-1 {entry.git_sha1}, got {got}"
    if entry.sha256 is not None and (digest := sha256_file(path)) != entry.sha256:
        return f"expected SHA-256 {entry.sha256}, got {digest}"
    return None


def _entries(items: Any, what: str, source: str) -> tuple[Entry, ...]:
    if items is None:
        return ()
    fields = set(Entry.__dataclass_fields__)
    out = []
    try:
        for item in items:
            entry = Entry(**{k: v for k, v in item.items() if k in fields})
            if not _HEX40.fullmatch(entry.git_sha1):
                raise ValueError(f"{entry.name}: git_sha1 must be 40 lowercase hex digits")
            if entry.sha256 is not None and not _HEX64.fullmatch(entry.sha256):
                raise ValueError(f"{entry.name}: sha256 must be 64 lowercase hex digits")
            out.append(entry)
    except (TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(f"registry {source}: bad {what} entry: {exc}") from None
    return tuple(out)


def parse_registry(data: dict[str, Any], source: str) -> Registry:
    return Registry(
        weights=_entries(data.get("weights"), "weights", source),
        samples=_entries(data.get("samples"), "samples", source),
        base_url=str(data.get("base_url") or DEFAULT_WEIGHTS_URL),
        commit=data.get("commit"),
        repository=data.get("repository"),
        source=source,
    )


def builtin_registry() -> Registry:
    text = resources.files("mammocli.weights").joinpath("registry.json").read_text("utf-8")
    return parse_registry(json.loads(text), "builtin")


def load_registry(manifest: Path | None = None) -> Registry:
    """The shipped registry, or the manifest given here or in MAMMOCLI_REGISTRY."""
    manifest = manifest or load_settings().registry
    if manifest is None:
        return builtin_registry()
    try:
        data = json.loads(Path(manifest).read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read registry manifest {manifest}: {exc}",
                          hint="MAMMOCLI_REGISTRY must name a JSON file like "
                               "mammocli/weights/registry.json") from None
    return parse_registry(data, str(manifest))
