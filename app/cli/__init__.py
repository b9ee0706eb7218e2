"""The ``ttc-serve`` command: one small module per command group, each over functions that live
with their logic (``router/calibrate/``, ``training/``)."""

from __future__ import annotations

import typer

from ttc_serve.app.cli import calibrate, serve, train

cli = typer.Typer(help="Compute-optimal test-time inference server.", no_args_is_help=True)
cli.command()(serve.serve)
cli.command()(serve.healthcheck)
cli.command()(calibrate.calibrate)
cli.command()(calibrate.bench)
cli.add_typer(train.train_cli, name="train")


def main() -> None:
    cli()
