"""Your own weights in place of official files: `--weights patch=NAME,view-image=FILE`.

A role is an official file's alias (patch, view-image, view-imageheatmaps, image-image,
image-imageheatmaps) or its file name; its value is a name registered with
`mammocli weights register NAME FILE` (checked against the recorded SHA-256) or a path to a
file in the official format. Files not overridden come from --weights-dir or the verified
cache, as before; the result's `weights` list records the file used and its SHA-256.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from ..errors import ConfigError, WeightsError
from ..settings import Settings
from .fetch import resolve_weights
from .registry import Registry, load_registry
from .store import find_user_weights, verify_user_weights


def parse_weight_overrides(text: str | None, registry: Registry | None = None
                           ) -> dict[str, str]:
    """`ROLE=NAME_OR_FILE,...` -> {official file name: NAME_OR_FILE}."""
    if not text or not text.strip():
        return {}
    registry = registry or load_registry()
    roles = {key: e.name for e in registry.weights for key in (e.alias, e.name) if key}
    choices = ", ".join(e.alias or e.name for e in registry.weights)
    out: dict[str, str] = {}
    for item in text.split(","):
        role, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not role or not value:
            raise ConfigError(f"--weights: {item.strip()!r} is not ROLE=NAME_OR_FILE",
                              hint=f"e.g. --weights patch=my-patch; roles: {choices}")
        if role not in roles:
            raise ConfigError(f"--weights: unknown role {role!r}", hint=f"roles: {choices}")
        if roles[role] in out:
            raise ConfigError(f"--weights: role {role!r} given twice")
        out[roles[role]] = value
    return out


def resolve_override(value: str, where: str, settings: Settings | None = None) -> Path:
    """The file for `value`: a registered name (its SHA-256 verified) or an existing file.
    `where` names the setting in messages (e.g. "--weights patch", "model.init.name")."""
    user = find_user_weights(value, settings)
    if user is not None:
        return verify_user_weights(user)
    path = Path(value).expanduser()
    if path.is_file():
        return path
    raise WeightsError(
        f"{where}={value}: no weights registered under that name and no such file",
        hint="register your file with `mammocli weights register NAME FILE` "
             "(`mammocli weights list` shows the names), or give the path of the file")


def _role(name: str) -> str:
    """The alias users type for official file `name` (the name itself if it has none)."""
    try:
        return load_registry().weight(name).alias or name
    except WeightsError:
        return name


def weights_locator(weights_dir: Path | None, overrides: Mapping[str, str] | None = None, *,
                    progress: bool = True) -> Callable[[str], Path]:
    """`locate(official name) -> path`: an override where one is given for that file, else the
    file from `weights_dir` or the verified cache (downloaded on first use)."""
    overrides = dict(overrides or {})

    def locate(name: str) -> Path:
        if name in overrides:
            return resolve_override(overrides[name], f"--weights {_role(name)}")
        return resolve_weights(name, weights_dir=weights_dir, progress=progress)

    return locate


WEIGHTS_HELP = ("Your own weights per role, e.g. patch=my-patch,view-image=./model.p: a name "
                "from `mammocli weights register` or a file. Roles: patch, view-image, "
                "view-imageheatmaps, image-image, image-imageheatmaps; the others come from "
                "--weights-dir or the cache.")
