"""The model families, by name. Adding a family: its names in `vocabulary`, a module here that
implements `base.ModelFamily`, and one entry below."""

from __future__ import annotations

from ..errors import ConfigError
from ..inference.family import ImageOutput, Inference, LoadedModels, ModelFamily
from ..vocabulary import Family
from .dmv_cnn import FAMILY as DMV_CNN
from .gmic import FAMILY as GMIC

FAMILIES: dict[Family, ModelFamily] = {
    Family.DMV_CNN: DMV_CNN,
    Family.GMIC: GMIC,
}


def get_family(name: Family | str) -> ModelFamily:
    try:
        return FAMILIES[Family(name)]
    except (ValueError, KeyError):
        known = ", ".join(f.value for f in FAMILIES)
        raise ConfigError(f"unknown model family {name!r}", hint=f"known families: {known}"
                          ) from None


__all__ = ["FAMILIES", "ImageOutput", "Inference", "LoadedModels", "ModelFamily", "get_family"]
