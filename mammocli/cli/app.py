"""The `mammocli` command. Each command group lives in its own module and registers here."""

from __future__ import annotations

import typer

from .. import __version__

app = typer.Typer(
    name="mammocli",
    help="Run and retrain the NYU breast-cancer screening model (Wu et al. 2019) on your own "
    "mammograms. Research use only: not a medical device.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
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


def _register() -> None:
    # One line per command module; each module exposes `register(app)`.
    from . import evaluate, hybrid, info, predict
    from . import reproduce as reproduce_cmd
    from . import sample as sample_cmd
    from . import train as train_cmd
    from . import weights as weights_cmd

    predict.register(app)
    info.register(app)
    weights_cmd.register(app)
    sample_cmd.register(app)
    hybrid.register(app)
    evaluate.register(app)
    reproduce_cmd.register(app)
    train_cmd.register(app)


_register()


def main() -> None:
    app()
