"""The `mammocli` command. Each command group lives in its own module and registers here.

A command's module is imported only when that command runs (or shows its own help): most
import torch, scikit-learn or matplotlib, which take seconds, and `mammocli --version` or
`mammocli --help` need none of them. The root help lists each command from `COMMANDS`; a test
checks that those lines are the commands' own.
"""

from __future__ import annotations

import importlib
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

from .. import __version__

# command -> (module in mammocli.cli that registers it, its one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "predict": ("predict", "Predict benign and malignant probabilities per breast. Research "
                           "use only."),
    "heatmaps": ("predict", "Write benign/malignant heatmaps per view: arrays, PNG overlays "
                            "and a JSON index."),
    "info": ("info", "Show versions, available devices, the cache folder and settings "
                     "(downloads nothing)."),
    "weights": ("weights", "Manage the model weights: the official NYU files (AGPL-3.0, "
                           "downloaded and verified on first use) and weights you trained."),
    "sample": ("sample", "The authors' sample exams."),
    "examples": ("examples", "Synthetic (non-patient) demo data to try every command on: "
                             "exams, a root, training sets and configs sized for a 2-core "
                             "CPU."),
    "hybrid": ("hybrid", "Hybrid reader + model: w * radiologist + (1 - w) * model per "
                         "reader, with AUCs."),
    "evaluate": ("evaluate", "Evaluate predictions against labels: AUCs with bootstrap CIs, "
                             "curves, subgroups."),
    "calibrate": ("calibrate", "Fit a calibration and operating points on your labelled exams: "
                               "site.json."),
    "reproduce": ("reproduce", "Download the official weights and the authors' sample exams, "
                               "run them as the authors' run.sh and run_single.sh do, and "
                               "compare with their published outputs."),
    "scan": ("scan", "Walk an archive once (DICOM headers only, in parallel) and write the "
                     "exam list for predict --exams, with why each other folder is no exam."),
    "status": ("status", "Show a results folder's ledger: done, failed (by error class), "
                         "running, missing, exams per hour and the ETA."),
    "train": ("train", "Train on your data: one CPU/GPU, or many GPUs and nodes through "
                       "torchrun."),
}


# Commands whose module loads torch: its OpenMP runtime reads its wait policy when loaded.
_COMPUTING = {"predict", "heatmaps", "reproduce", "train"}


def load_command(name: str) -> Any:
    """The real click command `name`, built from its module's `register(app)`."""
    if name in _COMPUTING:
        from ..inference.devices import wait_passively_when_busy  # no torch in it

        wait_passively_when_busy()
    module = importlib.import_module(f"{__package__}.{COMMANDS[name][0]}")
    holder = typer.Typer()
    module.register(holder)
    group = typer.main.get_group(holder)
    command = group.commands[name]
    plain_flags(command)
    return command


def plain_flags(command: Any) -> None:
    """Typer's help shows a `<bool>` type after every flag (`--overwrite <bool>`), which
    reads as if the flag took a value: an empty metavar shows none. Subcommands too."""
    for param in [*command.params, command.get_help_option(typer.Context(command))]:
        if param is not None and getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        plain_flags(sub)


class _LazyGroup(TyperGroup):
    """Lists every command at once (for help and suggestions) and imports one when used."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self._loaded: dict[str, Any] = {}
        for name, (_, short) in COMMANDS.items():
            self.commands.setdefault(name, TyperCommand(name=name, help=short))
        plain_flags(self)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        return self._loaded.get(cmd_name) or super().get_command(ctx, cmd_name)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        name = args[0] if args else None
        if name in COMMANDS and name not in self._loaded:
            self._loaded[name] = load_command(name)
        return super().resolve_command(ctx, args)


app = typer.Typer(
    name="mammocli",
    help="Run and retrain the NYU breast-cancer screening model (Wu et al. 2019) on your own "
    "mammograms. Research use only: not a medical device.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=_LazyGroup,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mammocli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Show the version and exit."),
) -> None:
    """mammocli: breast-cancer screening model of Wu et al. 2019, on your machine."""


def main() -> None:
    app()
