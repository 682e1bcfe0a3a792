"""The training loop: one process or many (torchrun), exact resume, validation AUROC per label
each epoch, best and last checkpoints, JSON Lines metrics, export at the end.

Exact resume: the data order of an epoch comes from (seed, epoch), each sample's randomness from
(seed, epoch, index) (see data.py), so restarting at optimiser step k of epoch e only needs the
model, optimiser, scheduler and scaler states and the position (e, k); batches already trained
are skipped by the sampler without being loaded.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..errors import ConfigError
from ..inference.devices import select_device
from ..reporting import Tracker, log, track
from . import checkpoint, distributed
from .build import build_datasets
from .config import OptimizerName, ScheduleName, TrainConfig
from .datasets import Datasets
from .export import export
from .tasks import TaskSpec, build_model, freeze_batchnorm, move

METRICS_LOG = "metrics.jsonl"


@dataclass
class Position:
    """Where training stands; saved in every checkpoint."""

    epoch: int = 0  # the epoch in progress (or next to start)
    batches: int = 0  # micro-batches of that epoch already trained (at an optimiser step)
    step: int = 0  # optimiser steps so far
    loss_sum: float = 0.0  # of the epoch in progress, for its log line
    loss_count: int = 0
    best: float | None = None
    best_epoch: int | None = None


@dataclass
class TrainResult:
    output_dir: Path
    finished: bool  # False when stopped by max_steps (resume with --resume)
    position: Position
    history: list[dict[str, Any]]
    export_path: Path | None


def make_optimizer(config: TrainConfig, params: Any) -> torch.optim.Optimizer:
    opt = config.optimizer
    if opt.name is OptimizerName.SGD:
        return torch.optim.SGD(params, lr=opt.lr, momentum=opt.momentum,
                               weight_decay=opt.weight_decay)
    cls = torch.optim.AdamW if opt.name is OptimizerName.ADAMW else torch.optim.Adam
    return cls(params, lr=opt.lr, weight_decay=opt.weight_decay)


def make_schedule(config: TrainConfig, optimizer: torch.optim.Optimizer,
                  steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Per optimiser step: linear warm-up, then constant, cosine to 0, or step decay."""
    s = config.schedule
    total = max(1, config.epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if s.warmup_steps and step < s.warmup_steps:
            return (step + 1) / s.warmup_steps
        if s.name is ScheduleName.COSINE:
            progress_ = min(1.0, (step - s.warmup_steps) / max(1, total - s.warmup_steps))
            return 0.5 * (1 + math.cos(math.pi * progress_))
        if s.name is ScheduleName.STEP:
            return float(s.gamma ** (step // (s.step_epochs * steps_per_epoch)))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def auroc(scores: np.ndarray, targets: np.ndarray, names: tuple[str, ...],
          ) -> dict[str, float | None]:
    """Per column; None where validation holds only one class (AUROC undefined)."""
    out: dict[str, float | None] = {}
    for i, name in enumerate(names):
        y = targets[:, i]
        out[name] = float(roc_auc_score(y, scores[:, i])) if 0 < y.sum() < len(y) else None
    return out


def evaluate(model: nn.Module, spec: TaskSpec, loader: DataLoader[Any],
             device: torch.device) -> dict[str, Any]:
    """Validation loss and AUROC per label (deterministic windows, eval mode, no noise)."""
    was_training = model.training
    model.eval()
    scores, targets, losses = [], [], []
    with torch.no_grad():
        for batch in loader:
            loss, s, t = spec.evaluate_batch(model, move(batch, device))
            losses.append(float(loss) * len(t))
            scores.append(s.cpu().numpy())
            targets.append(t.cpu().numpy())
    model.train(was_training)
    per_label = auroc(np.concatenate(scores), np.concatenate(targets), spec.metric_names)
    scored = [name for name, v in per_label.items() if v is not None]
    n = sum(len(t) for t in targets)
    # The mean only over every label: a mean over the scored ones alone would rank epochs by
    # one label when the validation set holds one class of another.
    complete = bool(scored) and len(scored) == len(per_label)
    return {"val_loss": sum(losses) / max(1, n), "auroc": per_label, "auroc_scored": scored,
            "mean_auroc": float(np.mean([per_label[k] for k in scored])) if complete else None}


def monitor_value(record: dict[str, Any], monitor: str) -> tuple[float, str]:
    """The value that ranks epochs for best.pt (higher is better) and the metric it is: the
    monitored one, or minus the validation loss where that is undefined."""
    value = record.get(monitor)
    if value is None:
        return -float(record["val_loss"]), "val_loss"
    return float(value), monitor


def undefined_auroc_warning(record: dict[str, Any], monitor: str) -> str | None:
    """Why best.pt is not chosen by the monitored AUROC, naming the labels scored."""
    per_label: dict[str, float | None] = record.get("auroc") or {}
    missing = [name for name, v in per_label.items() if v is None]
    if not missing or record.get(monitor) is not None:
        return None
    scored = [name for name, v in per_label.items() if v is not None]
    return (f"validation AUROC is undefined for {', '.join(missing)} (the validation set holds "
            f"one class only); scored: {', '.join(scored) or 'none'}. {monitor} is not computed "
            "from the scored label(s) alone, so best.pt is chosen by the validation loss; add "
            "validation cases of both classes of each label")


def _autocast(config: TrainConfig, device: torch.device) -> AbstractContextManager[Any]:
    if not config.amp:
        return nullcontext()
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


def _loader(dataset: Dataset[Any], config: TrainConfig, sampler: Any) -> DataLoader[Any]:
    return DataLoader(dataset, batch_size=config.batch_size, sampler=sampler,
                      num_workers=config.workers, pin_memory=False,
                      persistent_workers=False)


def _set_epoch(dataset: Dataset[Any], epoch: int) -> None:
    setter: Callable[[int], None] | None = getattr(dataset, "set_epoch", None)
    if setter is not None:
        setter(epoch)


@dataclass
class _Run:
    """What one training run works with, from setup to export."""

    data: Datasets
    model: nn.Module
    init_source: str
    net: nn.Module  # the model as trained (DDP-wrapped when distributed)
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    sampler: distributed.ResumableSampler
    micro_per_epoch: int
    val_loader: DataLoader[Any]
    pos: Position
    history: list[dict[str, Any]] = field(default_factory=list)


class Trainer:
    def __init__(self, config: TrainConfig, *, show_progress: bool = True) -> None:
        self.config = config
        self.show_progress = show_progress
        self.info = distributed.from_env()
        self.device = distributed.device_for(self.info, select_device(config.device))
        self.out = Path(config.output_dir)
        self.spec = TaskSpec(config)
        self._warned_auroc = False

    # ---------------------------------------------------------------- setup
    def _prepare(self) -> Datasets:
        """Data first: every manifest row is checked before a model is even built."""
        pipeline = self.config.pipeline_config()
        if self.info.is_main:
            data = build_datasets(self.config, pipeline, self.device)
            distributed.barrier(self.info)
        else:
            distributed.barrier(self.info)  # rank 0 filled the cache; read it
            data = build_datasets(self.config, pipeline, self.device)
        return data

    def run(self, *, resume: bool = False) -> TrainResult:
        distributed.setup(self.info, self.device)
        try:
            return self._run(resume)
        finally:
            distributed.teardown()

    def _run(self, resume: bool) -> TrainResult:
        run = self._setup(resume)
        pos, config = run.pos, self.config
        stopped = False
        with track("training", total=config.epochs * run.micro_per_epoch,
                   completed=pos.epoch * run.micro_per_epoch + pos.batches,
                   enabled=self.show_progress and self.info.is_main) as bar:
            while pos.epoch < config.epochs and not stopped:
                epoch_started = time.perf_counter()
                stopped = self._train_epoch(run, bar)
                if stopped:
                    break
                self._close_epoch(run, epoch_started)
                if config.max_steps is not None and pos.step >= config.max_steps:
                    stopped = pos.epoch < config.epochs
        export_path = None
        if not stopped and self.info.is_main:
            export_path = self._export(run.model, run.data, run.init_source, pos)
        distributed.barrier(self.info)
        return TrainResult(self.out, not stopped, pos, run.history, export_path)

    # ---------------------------------------------------------------- steps
    def _setup(self, resume: bool) -> _Run:
        """Data, model, optimiser, schedule and scaler, restored from the last checkpoint when
        resuming (in this order: restoring the RNG states comes after everything that draws)."""
        config = self.config
        last_path = self.out / checkpoint.LAST
        if not resume and last_path.exists():
            raise ConfigError(f"{self.out} already holds a training run ({checkpoint.LAST})",
                              hint="use --resume to continue it, or choose another output_dir")
        data = self._prepare()
        model, init_source = build_model(config)
        model.to(self.device)
        optimizer = make_optimizer(config, model.parameters())
        sampler = distributed.ResumableSampler(data.train, self.info, shuffle=True,
                                               seed=config.seed)
        micro_per_epoch = math.ceil(len(sampler) / config.batch_size)
        steps_per_epoch = math.ceil(micro_per_epoch / config.grad_accum)
        schedule = make_schedule(config, optimizer, steps_per_epoch)
        scaler = torch.amp.GradScaler("cuda", enabled=config.amp and self.device.type == "cuda")
        pos = Position()
        if resume:
            ckpt = checkpoint.load(last_path)
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            schedule.load_state_dict(ckpt["scheduler"])
            scaler.load_state_dict(ckpt["scaler"])
            checkpoint.restore_rng(ckpt["rng"])
            pos = Position(**ckpt["state"])
            log.info("resuming at epoch %d, step %d", pos.epoch + 1, pos.step)
        elif self.info.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / METRICS_LOG).unlink(missing_ok=True)
        net = distributed.wrap(model, self.info, self.device)
        return _Run(data, model, init_source, net, optimizer, schedule, scaler, sampler,
                    micro_per_epoch, _loader(data.val, config, None), pos)

    def _save_last(self, run: _Run) -> None:
        if self.info.is_main:
            checkpoint.save(self.out / checkpoint.LAST, {
                "model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
                "scheduler": run.schedule.state_dict(), "scaler": run.scaler.state_dict(),
                "rng": checkpoint.rng_states(), "state": asdict(run.pos),
                "config": self.config.model_dump_json(by_alias=True)})

    def _train_epoch(self, run: _Run, bar: Tracker | None) -> bool:
        """The rest of the epoch `run.pos.epoch` (from the micro-batch where it stands).
        True when max_steps stopped training inside it."""
        config, pos, net = self.config, run.pos, run.net
        _set_epoch(run.data.train, pos.epoch)
        run.sampler.set_epoch(pos.epoch, skip=pos.batches * config.batch_size)
        net.train()
        if config.model.freeze_bn:
            freeze_batchnorm(net)
        run.optimizer.zero_grad(set_to_none=True)
        micro = pos.batches
        for batch in _loader(run.data.train, config, run.sampler):
            micro += 1
            boundary = micro % config.grad_accum == 0 or micro == run.micro_per_epoch
            sync = (nullcontext() if boundary or not self.info.enabled
                    else net.no_sync())  # type: ignore[operator]
            with sync:
                with _autocast(config, self.device):
                    loss = self.spec.loss(net, move(batch, self.device))
                # torch leaves Tensor.backward unannotated
                run.scaler.scale(loss / config.grad_accum).backward()  # type: ignore[no-untyped-call]
            pos.loss_sum += float(loss.detach())
            pos.loss_count += 1
            if bar is not None:
                bar.advance(1, description=f"epoch {pos.epoch + 1} "
                            f"loss {pos.loss_sum / pos.loss_count:.4f}")
            if not boundary:
                continue
            run.scaler.step(run.optimizer)
            run.scaler.update()
            run.schedule.step()
            run.optimizer.zero_grad(set_to_none=True)
            pos.step += 1
            pos.batches = micro
            if micro == run.micro_per_epoch:  # end of the epoch
                return False
            hit_max = config.max_steps is not None and pos.step >= config.max_steps
            if hit_max or (config.checkpoint_every and pos.step % config.checkpoint_every == 0):
                self._save_last(run)
            if hit_max:
                return True
        return False

    def _close_epoch(self, run: _Run, started: float) -> None:
        """Validation, the metrics line, the best checkpoint, then the next epoch's position."""
        pos = run.pos
        record = self._end_epoch(run.model, run.val_loader, pos, run.schedule, started)
        run.history.append(record)
        if self.info.is_main and self._improved(record, pos):
            checkpoint.save(self.out / checkpoint.BEST,
                            {"model": run.model.state_dict(), "epoch": pos.epoch,
                             "metrics": record})
        pos.epoch += 1
        pos.batches = 0
        pos.loss_sum, pos.loss_count = 0.0, 0
        self._save_last(run)
        distributed.barrier(self.info)

    # ---------------------------------------------------------------- epoch end
    def _end_epoch(self, model: nn.Module, val_loader: DataLoader[Any], pos: Position,
                   schedule: torch.optim.lr_scheduler.LambdaLR, started: float,
                   ) -> dict[str, Any]:
        train_loss = distributed.all_reduce_mean(pos.loss_sum / max(1, pos.loss_count),
                                                 self.info, self.device)
        record: dict[str, Any] = {"epoch": pos.epoch + 1, "step": pos.step,
                                  "train_loss": train_loss, "lr": schedule.get_last_lr()[0]}
        if self.info.is_main:
            # Validation on rank 0 only: it is small next to training, and needs no gathering.
            record.update(evaluate(model, self.spec, val_loader, self.device))
            record["seconds"] = round(time.perf_counter() - started, 3)
            record["best_by"] = monitor_value(record, self.config.monitor)[1]
            with (self.out / METRICS_LOG).open("a") as f:
                f.write(json.dumps(record) + "\n")
            warning = undefined_auroc_warning(record, self.config.monitor)
            if warning is not None and not self._warned_auroc:  # once: same set every epoch
                log.warning("%s", warning)
                self._warned_auroc = True
            auc = record["mean_auroc"]
            scored = ", ".join(f"{k} {v:.3f}" for k, v in record["auroc"].items()
                               if v is not None)
            log.info("epoch %d: train loss %.4f, val loss %.4f, mean AUROC %s", pos.epoch + 1,
                     train_loss, record["val_loss"],
                     f"{auc:.3f}" if auc is not None else f"n/a (scored: {scored or 'none'})")
        return record

    def _improved(self, record: dict[str, Any], pos: Position) -> bool:
        value, _ = monitor_value(record, self.config.monitor)  # AUROC undefined: the val loss
        if pos.best is None or value > pos.best:
            pos.best, pos.best_epoch = float(value), pos.epoch + 1
            return True
        return False

    def _export(self, model: nn.Module, data: Datasets, init_source: str,
                pos: Position) -> Path:
        best_path = self.out / checkpoint.BEST
        metrics: dict[str, Any] = {"monitor": self.config.monitor, "best": pos.best,
                                   "best_epoch": pos.best_epoch}
        if best_path.is_file():
            best = checkpoint.load_best(best_path)
            model.load_state_dict(best["model"])
            metrics["best_metrics"] = best["metrics"]
            # Which metric really chose it (val_loss where an AUROC was undefined), and over
            # which labels the AUROC was scored.
            metrics["best_by"] = best["metrics"].get("best_by", self.config.monitor)
            metrics["auroc_scored"] = best["metrics"].get("auroc_scored")
        return export(model, self.config, self.out / "export", metrics=metrics, data=data.card,
                      init_source=init_source, patch_weights=data.patch_weights)


def train(config: TrainConfig, *, resume: bool = False, show_progress: bool = True,
          ) -> TrainResult:
    return Trainer(config, show_progress=show_progress).run(resume=resume)
