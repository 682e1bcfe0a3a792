"""`mammocli train`: retrain or fine-tune the patch classifier or a breast-level model."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ..console import stderr
from ..inference.devices import tune_allocator
from .common import handle_errors, write_stdout


def register(app: typer.Typer) -> None:
    @app.command("train")
    @handle_errors
    def train(
        config: Path = typer.Option(..., "--config", "-c",
                                    help="Training config (YAML); see examples/train_*.yaml."),
        resume: bool = typer.Option(False, "--resume",
                                    help="Continue the run in output_dir from its last.pt."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors on stderr."),
    ) -> None:
        """Train on your data: one CPU/GPU, or many GPUs and nodes through torchrun.
        Writes checkpoints, metrics.jsonl and official-format weights under output_dir."""
        # Imported here: torch.distributed and scikit-learn are slow to import for other commands.
        from ..train.config import load_config
        from ..train.distributed import from_env
        from ..train.loop import train as run_training

        tune_allocator()
        cfg = load_config(config)
        main = from_env().is_main
        result = run_training(cfg, resume=resume, show_progress=not quiet and main)
        if not main:
            return
        summary = {
            "output_dir": str(result.output_dir),
            "finished": result.finished,
            "epochs_done": result.position.epoch,
            "steps": result.position.step,
            "best": result.position.best,
            "best_epoch": result.position.best_epoch,
            "export": str(result.export_path) if result.export_path else None,
        }
        write_stdout(json.dumps(summary, indent=2))
        if not quiet and not result.finished:
            stderr.print("stopped at max_steps; continue with --resume")
