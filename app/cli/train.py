"""``ttc-serve train``: the embedded models' recipes (``training/``, torch; imported only here)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from ttc_serve.app.cli.common import stop_on_sigterm
from ttc_serve.app.settings import EMBEDDED_DIR

train_cli = typer.Typer(help="Train the embedded models (CPU).", no_args_is_help=True)

# The shipped generator-small is the small generator taught the check form: `train generator --size
# small` writes the stage before (it also rolls out the PRM's labels), `train checker` the shipped one.
SMALL_SOLVER = Path("build/generator-small-solver")


@train_cli.command("generator")
def train_generator(
    size: Annotated[str, typer.Option(help="small | small-attempts-first | large | smoke")] = "small",
    out: Annotated[Path | None, typer.Option(help="checkpoint directory")] = None,
    seed: int = 0,
    revisions: Annotated[bool, typer.Option(help="train the revise prompt form too")] = True,
) -> None:
    """Train a generator (solve, then revise from its own mistakes). --size small writes the stage
    before `train checker` (build/generator-small-solver); the others, the shipped checkpoint."""
    stop_on_sigterm()
    from ttc_serve.training import generator

    if size not in generator.GENERATOR_RECIPES:
        choices = ", ".join(generator.GENERATOR_RECIPES)
        raise typer.BadParameter(f"choose one of {choices}", param_hint="--size")
    recipe = replace(generator.GENERATOR_RECIPES[size], seed=seed)
    out = out or (SMALL_SOLVER if size == "small" else EMBEDDED_DIR / f"generator-{size}")
    report = generator.train_generator(recipe, out, with_revisions=revisions)
    typer.echo(f"{out}: {report.parameters} parameters, {report.seconds:.0f}s, "
               f"{report.tokens} tokens, final loss {report.final_loss:.4f}")


@train_cli.command("checker")
def train_checker(
    generator: Annotated[Path, typer.Option(help="generator checkpoint to teach the check form")] =
        SMALL_SOLVER,
    out: Annotated[Path, typer.Option(help="checkpoint directory")] = EMBEDDED_DIR / "generator-small",
    steps: Annotated[int, typer.Option(min=1, max=100_000)] = 4000,
    smoke: bool = False,
    seed: int = 0,
) -> None:
    """Teach a generator the check form (a step re-derived least significant digit first), its
    solve form held where it was by a KL anchor."""
    stop_on_sigterm()
    from ttc_serve.training import checker

    recipe = checker.SMOKE_CHECK if smoke else replace(checker.CheckRecipe(), steps=steps)
    report = checker.train_checker(replace(recipe, seed=seed), generator, out)
    typer.echo(f"{out}: {report.parameters} parameters, {report.seconds:.0f}s, "
               f"{report.tokens} tokens, final check loss {report.final_loss:.4f}")


@train_cli.command("prm")
def train_prm(
    generator: Annotated[Path, typer.Option(help="generator checkpoint that rolls out")] = SMALL_SOLVER,
    body: Annotated[Path, typer.Option(help="generator checkpoint whose body the PRM reads")] =
        EMBEDDED_DIR / "generator-large",
    out: Annotated[Path | None, typer.Option(help="checkpoint directory")] = None,
    smoke: bool = False,
    seed: int = 0,
) -> None:
    """Build the PRM on a generator's body; fit its head on Math-Shepherd labels from rollouts."""
    stop_on_sigterm()
    from ttc_serve.training import prm

    recipe = replace(prm.SMOKE_PRM if smoke else prm.PrmRecipe(), seed=seed)
    out = out or EMBEDDED_DIR / "prm"
    report = prm.train_prm(recipe, generator, body, out)
    typer.echo(f"{out}: {report.parameters} parameters, {report.seconds:.0f}s, "
               f"final loss {report.final_loss:.4f}")
