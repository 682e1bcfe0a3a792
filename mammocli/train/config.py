"""The training configuration: a YAML file validated by pydantic, with errors that name the key
(dotted path) and its line in the file.

Relative paths in the file are taken relative to the folder of the config file, so a config and
its manifests can move together.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from ..config import PipelineConfig
from ..errors import ConfigError
from ..vocabulary import ModelKind, Variant, parse_variant


class Task(str, Enum):
    PATCH = "patch"
    BREAST = "breast"
    GMIC = "gmic"


class InitFrom(str, Enum):
    OFFICIAL = "official"  # the authors' weights (or user-registered ones) via resolve_weights
    CHECKPOINT = "checkpoint"  # a training checkpoint or a weight file in the official format
    RANDOM = "random"
    REGISTERED = "registered"  # weights you registered: `mammocli weights register NAME FILE`


def _variant(value: object) -> object:
    if isinstance(value, str):
        try:
            return parse_variant(value)
        except ValueError:
            pass  # pydantic names the allowed values
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InitConfig(_Strict):
    from_: InitFrom = Field(default=InitFrom.OFFICIAL, alias="from")
    path: Path | None = None  # with from: checkpoint
    weights_dir: Path | None = None  # with from: official; default: the verified cache
    name: str | None = None  # with from: registered

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _path_for_checkpoint(self) -> InitConfig:
        if self.from_ is InitFrom.CHECKPOINT and self.path is None:
            raise ValueError("'path' is required when from: checkpoint")
        if (self.from_ is InitFrom.REGISTERED) != (self.name is not None):
            raise ValueError("'name' (of weights registered with `mammocli weights register`) "
                             "goes with from: registered, and only with it")
        return self


class ModelConfig(_Strict):
    kind: ModelKind = ModelKind.VIEW_WISE  # breast task only
    # Written image-only or image_only (as `predict --variants`); breast task only.
    variant: Annotated[Variant, BeforeValidator(_variant)] = Variant.IMAGE_ONLY
    init: InitConfig = Field(default_factory=InitConfig)
    # The patch classifier that computes heatmaps for the image-and-heatmaps variant: a weight
    # file in the official format, or null for the official (or registered) one.
    patch_weights: Path | None = None
    freeze_bn: bool = False  # BatchNorm in eval mode: running statistics fixed (fine-tuning, DDP)


class PatchSampling(_Strict):
    """Patches drawn per image per epoch, per class (0 malignant, 1 benign, 2 outside the breast,
    3 negative breast tissue). A lesion patch is centred on a pixel of its mask."""

    malignant: int = Field(default=4, ge=0)
    benign: int = Field(default=4, ge=0)
    outside: int = Field(default=2, ge=0)
    negative: int = Field(default=4, ge=0)
    # A patch is "outside" when at most this fraction of it is breast tissue.
    max_tissue_outside: float = Field(default=0.05, ge=0, le=1)


class DataConfig(_Strict):
    train: Path  # CSV manifest
    val: Path | None = None  # CSV manifest; else a `split` column or a patient-level hold-out
    val_fraction: float = Field(default=0.2, gt=0, lt=1)
    cache_dir: Path | None = None  # prepared images and heatmaps; default: <output_dir>/cache
    patches: PatchSampling = Field(default_factory=PatchSampling)
    val_patches_per_image: int = Field(default=8, gt=0)  # per class, fixed draw for validation


class OptimizerName(str, Enum):
    ADAM = "adam"
    ADAMW = "adamw"
    SGD = "sgd"


class ScheduleName(str, Enum):
    CONSTANT = "constant"
    COSINE = "cosine"
    STEP = "step"


class OptimizerConfig(_Strict):
    name: OptimizerName = OptimizerName.ADAM
    lr: float = Field(default=1e-4, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    momentum: float = Field(default=0.9, ge=0, lt=1)  # SGD only


class ScheduleConfig(_Strict):
    name: ScheduleName = ScheduleName.CONSTANT
    step_epochs: int = Field(default=10, gt=0)  # step: decay every this many epochs
    gamma: float = Field(default=0.1, gt=0, le=1)
    warmup_steps: int = Field(default=0, ge=0)


class PipelineSizes(_Strict):
    """Overrides of the pipeline sizes (defaults: the paper's). Smaller windows train faster."""

    cc_window: tuple[int, int] | None = None
    mlo_window: tuple[int, int] | None = None
    crop_iterations: int | None = Field(default=None, ge=0)
    crop_buffer: int | None = Field(default=None, ge=0)
    patch_size: int | None = Field(default=None, gt=0)
    patch_stride: int | None = Field(default=None, gt=0)
    heatmap_batch_size: int | None = Field(default=None, gt=0)
    max_crop_noise: tuple[int, int] | None = None
    max_crop_size_noise: int | None = Field(default=None, ge=0)

    def apply(self, base: PipelineConfig) -> PipelineConfig:
        return base.with_(**self.model_dump(exclude_none=True))


class GMICLabels(str, Enum):
    BREAST = "breast"  # the breast manifest: each image takes its breast's labels
    IMAGE = "image"  # an image manifest: image, view, benign, malignant (gmic_task.py)


class GMICSettings(_Strict):
    """task: gmic. The window, patch size and count default to the released model's; smaller
    ones train faster (the weights fit any of them)."""

    member: int = Field(default=1, ge=1, le=5)  # official file to start from; sets top-t
    labels: GMICLabels = GMICLabels.BREAST
    # beta of the paper's loss: BCE(y_global) + BCE(y_local) + BCE(y_fusion) + beta * |A|_1,
    # |A|_1 the sum of both saliency maps of an image (46 x 30 x 2 cells at full size).
    saliency_l1: float = Field(default=1e-5, ge=0)
    window: tuple[int, int] = (2944, 1920)
    patch_size: int = Field(default=256, gt=32)
    num_patches: int = Field(default=6, gt=0)

    @model_validator(mode="after")
    def _sizes(self) -> GMICSettings:
        if any(v <= 0 or v % 64 for v in self.window):
            raise ValueError("window: both sides must be positive multiples of 64 "
                             "(one saliency cell)")
        if self.patch_size > min(self.window):
            raise ValueError("patch_size must fit in the window")
        cells = (self.window[0] // 64) * (self.window[1] // 64)
        if self.num_patches > cells:
            raise ValueError(f"num_patches: the window has only {cells} saliency cells")
        return self


class TrainConfig(_Strict):
    task: Task
    data: DataConfig
    output_dir: Path
    model: ModelConfig = Field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    pipeline: PipelineSizes = Field(default_factory=PipelineSizes)
    epochs: int = Field(default=10, gt=0)
    batch_size: int = Field(default=4, gt=0)  # per process; the global batch is this x processes
    grad_accum: int = Field(default=1, gt=0)
    amp: bool = False  # bf16 autocast on CPU, fp16 with loss scaling on CUDA
    seed: int = 0
    workers: int = Field(default=0, ge=0)
    noise_std: float = Field(default=0.01, ge=0)  # Gaussian input noise in training (breast task)
    augment: bool = True  # the authors' random windows in training (breast task)
    device: str = "auto"
    # Also save last.pt every N optimiser steps (0: only at the end of each epoch).
    checkpoint_every: int = Field(default=0, ge=0)
    # Stop (resumably: continue with --resume) after this many optimiser steps.
    max_steps: int | None = Field(default=None, gt=0)
    monitor: str = "mean_auroc"  # metric that picks best.pt (higher is better)
    gmic: GMICSettings = Field(default_factory=GMICSettings)  # task: gmic only

    @model_validator(mode="after")
    def _gmic_window(self) -> TrainConfig:
        if self.task is Task.GMIC and (self.pipeline.cc_window or self.pipeline.mlo_window):
            raise ValueError("task gmic: set the window with gmic.window (one size for every "
                             "view), not pipeline.cc_window / mlo_window")
        return self

    def pipeline_config(self) -> PipelineConfig:
        base = PipelineConfig()
        if self.task is Task.GMIC:  # GMIC's window for both angles (as gmic_pipeline_config)
            base = base.with_(cc_window=self.gmic.window, mlo_window=self.gmic.window)
        return self.pipeline.apply(base)


def _resolve_paths(config: TrainConfig, base: Path) -> TrainConfig:
    def fix(p: Path | None) -> Path | None:
        return p if p is None or p.is_absolute() else base / p

    data = config.data.model_copy(update={
        "train": fix(config.data.train), "val": fix(config.data.val),
        "cache_dir": fix(config.data.cache_dir)})
    init = config.model.init.model_copy(update={
        "path": fix(config.model.init.path), "weights_dir": fix(config.model.init.weights_dir)})
    model = config.model.model_copy(update={"init": init,
                                            "patch_weights": fix(config.model.patch_weights)})
    return config.model_copy(update={"data": data, "model": model,
                                     "output_dir": fix(config.output_dir)})


def _line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """The 1-based line of the YAML node at `loc` (the deepest one that exists)."""
    line = None if node is None else node.start_mark.line + 1
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            match = [(k, v) for k, v in node.value if k.value == key]
            if not match:
                return line
            key_node, node = match[0]
            line = key_node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) \
                and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def parse_config(text: str, source: str, base: Path) -> TrainConfig:
    """Validate YAML text; errors name the file, the dotted key and its line."""
    try:
        doc: Any = yaml.safe_load(text)
        tree = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML ({exc})") from exc
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: expected a mapping of training settings")
    try:
        config = TrainConfig.model_validate(doc)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            key = ".".join(str(p) for p in loc) or "(top level)"
            line = _line_of(tree, tuple(p for p in loc if not str(p).startswith("function-")))
            where = f"line {line}, " if line else ""
            message = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            lines.append(f"{where}{key}: {message}")
        raise ConfigError(
            f"{source}: invalid training config:\n  " + "\n  ".join(lines),
            hint="see examples/train_*.yaml, or `mammocli examples make DIR` for small "
                 "runnable configs",
        ) from None
    return _resolve_paths(config, base)


def load_config(path: Path) -> TrainConfig:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the training config ({exc.strerror})") from exc
    return parse_config(text, str(path), path.resolve().parent)
