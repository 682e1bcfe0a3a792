"""`predict --fast`: the cheap settings, with what they cost in accuracy said in the help."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from ..vocabulary import Family, ModelKind, family_of

DEFAULT_TTA = 10  # the authors' --num-epochs 10 with --use-augmentation

FAST_HELP = (
    "Cheap preset. DMV-CNN: --variants image-only --tta 0 (no heatmap stage, one window; "
    "several times faster on a CPU), at a cost in accuracy: the paper's image-only model is "
    "the weaker one (see README Options). GMIC: --gmic-models 1 (one member of five; "
    "reader-study AUROC 0.857 vs 0.881 for the ensemble). Not with --variants, --gmic-models "
    "or --tta: give either the preset or the options.")


@dataclass(frozen=True)
class Chosen:
    """The model options after the preset: what choose_variants and the config receive."""

    variants: str | None
    gmic_models: str | None
    tta: int


def apply_fast(fast: bool, model: ModelKind, variants: str | None, gmic_models: str | None,
               tta: int | None) -> Chosen:
    """--fast in place of the options it sets; an explicit one next to it is a usage error
    (which of the two was meant cannot be guessed)."""
    if not fast:
        return Chosen(variants, gmic_models, DEFAULT_TTA if tta is None else tta)
    given = [name for name, value in (("--variants", variants), ("--gmic-models", gmic_models),
                                      ("--tta", tta)) if value is not None]
    if given:
        raise ConfigError(f"--fast sets {', '.join(given)} itself; it cannot be combined "
                          f"with {' or '.join(given)}",
                          hint="drop --fast to choose the options yourself, or drop "
                               f"{' and '.join(given)} to take the preset")
    if family_of(model) is Family.GMIC:
        return Chosen(None, "1", 0)
    return Chosen("image-only", None, 0)
