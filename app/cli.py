"""The ``ttc-serve`` command: serve, train the embedded models, evaluate them."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Annotated

import typer

from app.settings import EMBEDDED_DIR, Settings

cli = typer.Typer(help="Compute-optimal test-time inference server.", no_args_is_help=True)
train_cli = typer.Typer(help="Train the embedded models (CPU).", no_args_is_help=True)
cli.add_typer(train_cli, name="train")


@cli.command()
def serve(host: Annotated[str | None, typer.Option(help="bind address (TTC_HOST)")] = None,
          port: Annotated[int | None, typer.Option(help="port (TTC_PORT)")] = None) -> None:
    """Serve the API. With no TTC_GENERATOR_URL / TTC_PRM_URL, start the embedded vLLM CPU servers."""
    import uvicorn

    from app.main import create_app

    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    settings = Settings(**overrides)  # type: ignore[arg-type]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # uvicorn re-raises Ctrl-C after its graceful shutdown; by then everything is stopped.
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")


@train_cli.command("generator")
def train_generator(
    size: Annotated[str, typer.Option(help="small | large | smoke")] = "small",
    out: Annotated[Path | None, typer.Option(help="checkpoint directory")] = None,
    seed: int = 0,
    revisions: Annotated[bool, typer.Option(help="train the revise prompt form too")] = True,
) -> None:
    """Train a generator (solve, then revise from its own mistakes)."""
    from dataclasses import replace

    from models.embedded import training

    if size not in training.GENERATOR_RECIPES:
        choices = ", ".join(training.GENERATOR_RECIPES)
        raise typer.BadParameter(f"choose one of {choices}", param_hint="--size")
    recipe = replace(training.GENERATOR_RECIPES[size], seed=seed)
    out = out or EMBEDDED_DIR / f"generator-{size}"
    report = training.train_generator(recipe, out, with_revisions=revisions)
    typer.echo(f"{out}: {report.parameters} parameters, {report.seconds:.0f}s, "
               f"{report.tokens} tokens, final loss {report.final_loss:.4f}")


@train_cli.command("prm")
def train_prm(
    generator: Annotated[Path, typer.Option(help="generator checkpoint that rolls out")] =
        EMBEDDED_DIR / "generator-small",
    out: Annotated[Path | None, typer.Option(help="checkpoint directory")] = None,
    smoke: bool = False,
    seed: int = 0,
) -> None:
    """Train the PRM on Math-Shepherd soft labels from the generator's rollouts."""
    from dataclasses import replace

    from models.embedded import training

    recipe = replace(training.SMOKE_PRM if smoke else training.PrmRecipe(), seed=seed)
    out = out or EMBEDDED_DIR / "prm"
    report = training.train_prm(recipe, generator, out)
    typer.echo(f"{out}: {report.parameters} parameters, {report.seconds:.0f}s, "
               f"final loss {report.final_loss:.4f}")


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
