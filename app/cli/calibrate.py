"""``ttc-serve calibrate`` and ``ttc-serve bench``: the strategy grid on a question set, the policy
fitted from it, and the held-out benchmark of ``auto`` against every fixed strategy."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from ttc_serve.app.cli.common import bound_store, floats, prompts_as_served, stop_on_sigterm
from ttc_serve.app.settings import Settings
from ttc_serve.router.calibrate.dataset import Question
from ttc_serve.router.calibrate.records import RecordStore

CALIBRATION_DIR = Path("bench/results/calibration")
BEST_OF_N_CURVE = "1e9,2e9,4e9,8e9,1.6e10,3.2e10"
GeneratorUrls = Annotated[list[str] | None, typer.Option(
    help="vLLM generator (comma-separated: its replicas); repeat for more server pairs (default: "
         "TTC_GENERATOR_URL(S), else the embedded servers)")]
PrmUrls = Annotated[list[str] | None, typer.Option(
    help="vLLM PRM (comma-separated: its replicas), one per --generator-url")]
RawPrompts = Annotated[bool, typer.Option(
    help="send a JSONL's prompts as they are (as /v1/completions would), not as a chat user message "
         "through the generator's chat template")]


def calibrate(
    questions: Annotated[str, typer.Option(help="embedded:dev, or a prompt/answer JSONL")] = "embedded:dev",
    per_level: Annotated[int | None, typer.Option(min=1, help="questions per level (embedded)")] = 16,
    budgets: Annotated[str, typer.Option(help="FLOPs budgets of the grid")] =
        "1e9,1.5e9,2e9,4e9,8e9,1.6e10,3.2e10",
    difficulty_samples: Annotated[int, typer.Option(min=1, max=64)] = 4,
    oracle_samples: Annotated[int, typer.Option(min=1, max=256)] = 16,
    concurrency: Annotated[int, typer.Option(min=1, max=1024, help=(
        "requests at a time per server pair (per replica where a role has several)"))] = 16,
    generator_url: GeneratorUrls = None,
    prm_url: PrmUrls = None,
    out_dir: Annotated[Path, typer.Option(help="records, summary, plots")] = CALIBRATION_DIR,
    policy_out: Annotated[Path | None, typer.Option(
        help="where the policy goes (default OUT_DIR/policy.json; serve it with TTC_POLICY_PATH)")] = None,
    raw_prompts: RawPrompts = False,
) -> None:
    """Run the strategy grid on the calibration split and fit the compute-optimal policy (resumable:
    finished runs are kept in OUT_DIR/records.jsonl and skipped when run again)."""
    from ttc_serve.app import wiring
    from ttc_serve.router.calibrate import calibrate as cal
    from ttc_serve.router.calibrate.dataset import load_questions

    stop_on_sigterm()
    settings = wiring.offline(Settings())
    plan = cal.CalibrationPlan(budgets=floats(budgets, "--budgets"), difficulty_samples=difficulty_samples,
                               oracle_samples=oracle_samples, concurrency=concurrency)
    models = wiring.model_ids(settings)

    async def run() -> tuple[list[Question], RecordStore]:
        async with wiring.backend_pairs(settings, generator_url or [], prm_url or []) as pairs:
            items = await prompts_as_served(settings, pairs[0], load_questions(questions, per_level),
                                            raw_prompts or questions.startswith("embedded:"))
            store = bound_store(out_dir, models.model_dump(), items)
            await cal.collect(wiring.engines(settings, pairs), items, store,
                              replace(plan, concurrency=concurrency * pairs[0].width))
            return items, store

    items, store = asyncio.run(run())
    try:
        policy, summary = cal.fit_policy(store, items, plan, models)
    except cal.NothingSolved as exc:
        typer.echo(f"ttc-serve calibrate: {exc}", err=True)
        raise typer.Exit(1) from None
    target = policy_out or out_dir / "policy.json"
    policy.save(target)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    figures = cal.write_figures(summary, out_dir)
    typer.echo(f"policy: {target}\nsummary: {out_dir / 'summary.json'}\nfigures: "
               + ", ".join(str(f) for f in figures))


def bench(
    questions: Annotated[str, typer.Option(help="embedded:test, or a prompt/answer JSONL")] = "embedded:test",
    per_level: Annotated[int | None, typer.Option(min=1, help="questions per level (embedded)")] = 16,
    budgets: Annotated[str, typer.Option(help="budgets for auto and the fixed strategies")] =
        "2e9,4e9,8e9,3.2e10",
    curve_budgets: Annotated[str, typer.Option(help="best-of-N budgets")] = BEST_OF_N_CURVE,
    oracle_samples: Annotated[int, typer.Option(min=1, max=256)] = 16,
    concurrency: Annotated[int, typer.Option(min=1, max=1024)] = 16,
    generator_url: GeneratorUrls = None,
    prm_url: PrmUrls = None,
    out_dir: Annotated[Path, typer.Option()] = Path("bench/results/auto"),
    raw_prompts: RawPrompts = False,
) -> None:
    """Held-out benchmark: auto (difficulty charged) vs every fixed strategy vs best-of-N."""
    from ttc_serve.app import wiring
    from ttc_serve.router.calibrate import bench as bench_module
    from ttc_serve.router.calibrate.dataset import load_questions
    from ttc_serve.router.policy import CalibratedPolicy

    stop_on_sigterm()
    settings = wiring.offline(Settings())
    policy, difficulty = wiring.load_policy(settings)
    if not isinstance(policy, CalibratedPolicy) or difficulty is None:
        raise typer.BadParameter("no calibrated policy (run `ttc-serve calibrate` first)")
    plan = bench_module.BenchPlan(budgets=floats(budgets, "--budgets"),
                                  curve_budgets=floats(curve_budgets, "--curve-budgets"),
                                  oracle_samples=oracle_samples,
                                  difficulty_samples=policy.difficulty.samples, concurrency=concurrency)
    models = wiring.model_ids(settings).model_dump()

    async def run() -> tuple[list[Question], RecordStore, RecordStore]:
        async with wiring.backend_pairs(settings, generator_url or [], prm_url or []) as pairs:
            items = await prompts_as_served(settings, pairs[0], load_questions(questions, per_level),
                                            raw_prompts or questions.startswith("embedded:"))
            store = bound_store(out_dir, models, items)
            auto_store = bound_store(out_dir, models, items, policy.model_dump_json(), "auto.jsonl")
            await bench_module.collect(wiring.engines(settings, pairs),
                                       wiring.engines(settings, pairs, policy, difficulty),
                                       items, store, auto_store,
                                       replace(plan, concurrency=concurrency * pairs[0].width))
            return items, store, auto_store

    items, store, auto_store = asyncio.run(run())
    summary = bench_module.summarise(store, auto_store, items, plan, policy)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    figures = bench_module.write_figures(summary, out_dir)
    for budget, entry in summary["budgets"].items():
        eff = entry["efficiency"]
        best = entry["auto_minus_best_fixed"]["best_fixed"]
        typer.echo(f"B={budget}: auto {entry['auto']['accuracy']:.3f}, best fixed {best} "
                   f"{entry['fixed'][best]['accuracy']:.3f}, efficiency x{eff['ratio']:.2f} ({eff['bound']})")
    typer.echo("figures: " + ", ".join(str(f) for f in figures))
