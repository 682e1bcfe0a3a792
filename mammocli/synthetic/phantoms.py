"""Synthetic, non-patient data for demos, tests and benchmarks: breast-shaped phantoms and
randomly initialised weights in the official file formats. Never use these for predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from ..models.breast import ImageBreastModel, SplitBreastModel
from ..models.densenet import PatchClassifier
from ..views import VIEWS, Side, View
from ..vocabulary import PATCH_WEIGHTS, WEIGHT_FILES, Family, ModelKind, Variant


def phantom(shape: tuple[int, int], rng: np.random.Generator, *, facing: Side = Side.RIGHT,
            lesion: bool = False, lesion_contrast: float = 0.25) -> np.ndarray:
    """A breast-like uint16 image (12-bit values rescaled to 16 bit, as the authors' PNGs):
    a half-ellipse of textured tissue on the chest-wall edge, exactly-zero background."""
    height, width = shape
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    cy = height * rng.uniform(0.45, 0.55)
    ry = height * rng.uniform(0.38, 0.46)
    rx = width * rng.uniform(0.6, 0.8)
    inside = ((yy - cy) / ry) ** 2 + (xx / rx) ** 2 <= 1.0
    texture = ndimage.gaussian_filter(rng.normal(size=shape), sigma=max(2.0, width / 60))
    texture = (texture - texture.min()) / (np.ptp(texture) + 1e-9)
    depth = np.sqrt(np.clip(1 - ((yy - cy) / ry) ** 2 - (xx / rx) ** 2, 0, 1))
    tissue = 0.35 + 0.35 * depth + 0.25 * texture
    if lesion:
        ly = cy + rng.uniform(-0.5, 0.5) * ry
        lx = rx * rng.uniform(0.2, 0.6)
        radius = min(height, width) * rng.uniform(0.03, 0.06)
        tissue += lesion_contrast * np.exp(-(((yy - ly) ** 2 + (xx - lx) ** 2) / (2 * radius**2)))
    values12 = np.clip(np.round(tissue * 4095), 1, 4095) * inside
    image: np.ndarray = np.round(values12 * 65535 / 4095).astype(np.uint16)
    return image[:, ::-1].copy() if facing is Side.LEFT else image


def write_png16(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image.astype(np.uint16)).save(path)


def write_exam(folder: Path, shape: tuple[int, int] = (400, 300), seed: int = 0, *,
               lesion_views: tuple[View, ...] = ()) -> Path:
    """A four-view PNG exam in the authors' layout (`horizontal_flip` NO: L views face right,
    R views face left), files named `<side>_<angle>.png`."""
    rng = np.random.default_rng(seed)
    for view in VIEWS:
        facing = Side.RIGHT if view.side is Side.LEFT else Side.LEFT
        image = phantom(shape, rng, facing=facing, lesion=view in lesion_views)
        write_png16(Path(folder) / f"{view.side.letter}_{view.angle.value}.png", image)
    return Path(folder)


def _randomise(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random weights with non-trivial BatchNorm statistics, so outputs are informative."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("running_mean"):
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.1)
            elif name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) * 0.5 + 0.75)
    return model.eval()


def write_random_weights(folder: Path, seed: int = 0) -> Path:
    """The five official DMV-CNN files (names and formats) with random weights."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    torch.save(_randomise(PatchClassifier(), seed).state_dict(), folder / PATCH_WEIGHTS)
    for (family, kind, variant), name in WEIGHT_FILES.items():
        if family is not Family.DMV_CNN:
            continue
        channels = 3 if variant is Variant.IMAGE_AND_HEATMAPS else 1
        model = SplitBreastModel(channels) if kind is ModelKind.VIEW_WISE \
            else ImageBreastModel(channels)
        torch.save({"model": _randomise(model, seed).state_dict()}, folder / name)
    return folder


def write_random_gmic_weights(folder: Path, members: tuple[int, ...] = (1, 2, 3, 4, 5),
                              seed: int = 0) -> Path:
    """GMIC member files `sample_model_<i>.p` in the official layout (a flat state dict plus
    the extra key the real files carry) with random weights, ~57 MB each."""
    from ..models.gmic import GMIC, PERCENT_T
    from ..models.gmic_loading import EXTRA_KEY, member_file_name

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for member in members:
        torch.manual_seed(seed + member)
        state = _randomise(GMIC(PERCENT_T[member]), seed + member).state_dict()
        state[EXTRA_KEY] = torch.zeros((4, 4))
        torch.save(state, folder / member_file_name(member))
    return folder
