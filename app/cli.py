"""The ``ttc-serve`` command: serve, train the embedded models, evaluate them."""

from __future__ import annotations

import contextlib
import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from app.settings import EMBEDDED_DIR, Settings

if TYPE_CHECKING:  # the CLI imports its heavy parts inside each command
    from router.calibrate.dataset import Question
    from router.calibrate.records import RecordStore
    from router.policy import CalibratedPolicy

cli = typer.Typer(help="Compute-optimal test-time inference server.", no_args_is_help=True)
train_cli = typer.Typer(help="Train the embedded models (CPU).", no_args_is_help=True)
cli.add_typer(train_cli, name="train")


@cli.command()
def serve(host: Annotated[str | None, typer.Option(help="bind address (TTC_HOST)")] = None,
          port: Annotated[int | None, typer.Option(help="port (TTC_PORT)")] = None) -> None:
    """Serve the API. With no TTC_GENERATOR_URL / TTC_PRM_URL, start the embedded vLLM CPU servers."""
    import uvicorn

    from app.backends import embedded_server_specs
    from app.main import create_app
    from models.launcher import ServerStartError, running

    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    settings = Settings(**overrides)  # type: ignore[arg-type]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    urls = {"generator_url": settings.generator_url, "prm_url": settings.prm_url}
    wanted = [spec for spec, url in zip(embedded_server_specs(settings), urls.values(), strict=True)
              if url is None]
    # The embedded servers start here, before uvicorn, rather than in the app's lifespan: uvicorn
    # acts on Ctrl-C only once its start-up has finished, which took minutes on a busy machine.
    # Here Ctrl-C stops the start at once, and ``running`` stops whatever had started.
    try:
        with contextlib.suppress(KeyboardInterrupt), \
                running(*wanted, timeout_s=settings.backend_start_timeout_s) as servers:
            started = iter(server.base_url for server in servers)
            settings = settings.model_copy(update={k: v or next(started) for k, v in urls.items()})
            # uvicorn re-raises Ctrl-C after its graceful shutdown; ``running`` then stops the servers.
            uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")
    except ServerStartError as exc:
        typer.echo(f"ttc-serve: {exc}", err=True)
        raise typer.Exit(1) from None


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
    _stop_on_sigterm()
    from dataclasses import replace

    from models.embedded import training

    if size not in training.GENERATOR_RECIPES:
        choices = ", ".join(training.GENERATOR_RECIPES)
        raise typer.BadParameter(f"choose one of {choices}", param_hint="--size")
    recipe = replace(training.GENERATOR_RECIPES[size], seed=seed)
    out = out or (SMALL_SOLVER if size == "small" else EMBEDDED_DIR / f"generator-{size}")
    report = training.train_generator(recipe, out, with_revisions=revisions)
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
    solve form held where it was by a KL anchor (docs/reviser.md, row 20c)."""
    _stop_on_sigterm()
    from dataclasses import replace

    from models.embedded import checking

    recipe = checking.SMOKE_CHECK if smoke else replace(checking.CheckRecipe(), steps=steps)
    report = checking.train_checker(replace(recipe, seed=seed), generator, out)
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
    _stop_on_sigterm()
    from dataclasses import replace

    from models.embedded import prm_training

    recipe = replace(prm_training.SMOKE_PRM if smoke else prm_training.PrmRecipe(), seed=seed)
    out = out or EMBEDDED_DIR / "prm"
    report = prm_training.train_prm(recipe, generator, body, out)
    typer.echo(f"{out}: {report.parameters} parameters, {report.seconds:.0f}s, "
               f"final loss {report.final_loss:.4f}")


CALIBRATION_DIR = Path("bench/results/calibration")
BEST_OF_N_CURVE = "1e9,2e9,4e9,8e9,1.6e10,3.2e10"
LARGE_DIR = EMBEDDED_DIR / "generator-large"


def _bound_store(out_dir: Path, context: dict[str, str], name: str = "records.jsonl") -> RecordStore:
    """The run's record store, bound to what its records depend on (see ``RecordStore``)."""
    from router.calibrate.records import RecordStore

    store = RecordStore(out_dir / name, context)
    if store.stale is not None:
        typer.echo(f"records of other models or questions moved to {store.stale}")
    return store


def _run_context(settings: Settings, items: list[Question], policy: CalibratedPolicy | None = None,
                 **extra: str) -> dict[str, str]:
    from models.identity import fingerprint
    from router.calibrate.records import questions_digest

    context = {"generator": fingerprint(settings.generator_dir), "verifier": fingerprint(settings.prm_dir),
               "questions": questions_digest(items), **extra}
    if policy is not None:
        context["policy"] = hashlib.sha256(policy.model_dump_json().encode()).hexdigest()[:16]
    return context


def _stop_on_sigterm() -> None:
    """Offline commands start vLLM servers of their own: on SIGTERM unwind like Ctrl-C, so that the
    ``finally`` blocks stop them (process group and all) instead of leaving them to PDEATHSIG."""
    import signal

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


def _floats(text: str, param: str) -> tuple[float, ...]:
    try:
        values = tuple(sorted(float(v) for v in text.split(",") if v.strip()))
    except ValueError as exc:
        raise typer.BadParameter(f"comma-separated numbers, e.g. 1e9,2e9 ({exc})", param_hint=param) from None
    if not values or min(values) <= 0:
        raise typer.BadParameter("give at least one budget, all positive", param_hint=param)
    return values


@cli.command()
def calibrate(
    questions: Annotated[str, typer.Option(help="embedded:dev, or a prompt/answer JSONL")] = "embedded:dev",
    per_level: Annotated[int | None, typer.Option(min=1, help="questions per level (embedded)")] = 16,
    budgets: Annotated[str, typer.Option(help="FLOPs budgets of the grid")] =
        "1e9,1.5e9,2e9,4e9,8e9,1.6e10,3.2e10",
    difficulty_samples: Annotated[int, typer.Option(min=1, max=64)] = 4,
    oracle_samples: Annotated[int, typer.Option(min=1, max=256)] = 16,
    concurrency: Annotated[int, typer.Option(min=1, max=1024, help="requests per server pair")] = 16,
    generator_url: Annotated[list[str] | None, typer.Option(help="vLLM generator; repeat for more")] = None,
    prm_url: Annotated[list[str] | None, typer.Option(help="vLLM PRM, one per --generator-url")] = None,
    out_dir: Annotated[Path, typer.Option(help="records, summary, plots")] = CALIBRATION_DIR,
    policy_out: Annotated[Path | None, typer.Option(help="where the policy goes (TTC_POLICY_PATH)")] = None,
) -> None:
    """Run the strategy grid on the calibration split and fit the compute-optimal policy (resumable:
    finished runs are kept in OUT_DIR/records.jsonl and skipped when run again)."""
    import asyncio
    import json

    from app.backends import backend_pairs, engines
    from models.identity import fingerprint
    from router.calibrate import calibrate as cal
    from router.calibrate.dataset import load_questions
    from router.policy import ModelIds

    _stop_on_sigterm()
    settings = Settings()
    plan = cal.CalibrationPlan(budgets=_floats(budgets, "--budgets"), difficulty_samples=difficulty_samples,
                               oracle_samples=oracle_samples, concurrency=concurrency)
    items = load_questions(questions, per_level)
    models = ModelIds(generator=fingerprint(settings.generator_dir), verifier=fingerprint(settings.prm_dir))
    store = _bound_store(out_dir, _run_context(settings, items))

    async def run() -> None:
        async with backend_pairs(settings, generator_url or [], prm_url or []) as pairs:
            await cal.collect(engines(settings, pairs), items, store, plan)

    asyncio.run(run())
    policy, summary = cal.fit_policy(store, items, plan, models)
    target = policy_out or settings.policy_path or out_dir / "policy.json"
    policy.save(target)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    figures = cal.write_figures(summary, out_dir)
    typer.echo(f"policy: {target}\nsummary: {out_dir / 'summary.json'}\nfigures: "
               + ", ".join(str(f) for f in figures))


@cli.command()
def bench(
    questions: Annotated[str, typer.Option(help="embedded:test, or a prompt/answer JSONL")] = "embedded:test",
    per_level: Annotated[int | None, typer.Option(min=1, help="questions per level (embedded)")] = 16,
    budgets: Annotated[str, typer.Option(help="budgets for auto and the fixed strategies")] =
        "2e9,4e9,8e9,3.2e10",
    curve_budgets: Annotated[str, typer.Option(help="best-of-N budgets")] = BEST_OF_N_CURVE,
    oracle_samples: Annotated[int, typer.Option(min=1, max=256)] = 16,
    concurrency: Annotated[int, typer.Option(min=1, max=1024)] = 16,
    generator_url: Annotated[list[str] | None, typer.Option()] = None,
    prm_url: Annotated[list[str] | None, typer.Option()] = None,
    out_dir: Annotated[Path, typer.Option()] = Path("bench/results/auto"),
) -> None:
    """Held-out benchmark: auto (difficulty charged) vs every fixed strategy vs best-of-N."""
    import asyncio
    import json

    from app.backends import backend_pairs, engines
    from app.state import load_policy
    from router.calibrate import bench as bench_module
    from router.calibrate.dataset import load_questions
    from router.policy import CalibratedPolicy

    _stop_on_sigterm()
    settings = Settings()
    policy, difficulty = load_policy(settings)
    if not isinstance(policy, CalibratedPolicy) or difficulty is None:
        raise typer.BadParameter("no calibrated policy (run `ttc-serve calibrate` first)")
    plan = bench_module.BenchPlan(budgets=_floats(budgets, "--budgets"),
                                  curve_budgets=_floats(curve_budgets, "--curve-budgets"),
                                  oracle_samples=oracle_samples,
                                  difficulty_samples=policy.difficulty.samples, concurrency=concurrency)
    items = load_questions(questions, per_level)
    store = _bound_store(out_dir, _run_context(settings, items))
    auto_store = _bound_store(out_dir, _run_context(settings, items, policy), "auto.jsonl")

    async def run() -> None:
        async with backend_pairs(settings, generator_url or [], prm_url or []) as pairs:
            await bench_module.collect(engines(settings, pairs),
                                       engines(settings, pairs, policy=policy, difficulty=difficulty),
                                       items, store, auto_store, plan)

    asyncio.run(run())
    summary = bench_module.summarise(store, auto_store, items, plan, policy)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    figures = bench_module.write_figures(summary, out_dir)
    for budget, entry in summary["budgets"].items():
        eff = entry["efficiency"]
        typer.echo(f"B={budget}: auto {entry['auto']['accuracy']:.3f}, best fixed "
                   f"{entry['auto_minus_best_fixed']['best_fixed']} "
                   f"{entry['fixed'][entry['auto_minus_best_fixed']['best_fixed']]['accuracy']:.3f}, "
                   f"efficiency x{eff['ratio']:.2f} ({eff['bound']})")
    typer.echo("figures: " + ", ".join(str(f) for f in figures))


@cli.command()
def exchange(
    large_dir: Annotated[Path, typer.Option(help="the ~14x larger generator")] = LARGE_DIR,
    questions: Annotated[str, typer.Option(help="embedded:test, or a prompt/answer JSONL")] = "embedded:test",
    per_level: Annotated[int | None, typer.Option(min=1, help="questions per level (embedded)")] = 16,
    ratios: Annotated[str, typer.Option(help="R = inference tokens / pre-training tokens")] = "0.16,0.79,22",
    oracle_samples: Annotated[int, typer.Option(min=1, max=256)] = 16,
    concurrency: Annotated[int, typer.Option(min=1, max=1024)] = 16,
    out_dir: Annotated[Path, typer.Option()] = Path("bench/results/exchange"),
) -> None:
    """The paper's §7: the small generator with auto against the large one greedy, at matched total
    (pre-training + inference) FLOPs, per difficulty bin (resumable, like calibrate and bench)."""
    import asyncio
    import json

    from app.backends import backend_pairs, engines
    from app.state import load_policy
    from models.identity import fingerprint
    from models.launcher import ServerSpec, VllmServer, start_all
    from models.vllm_http import HttpBackendConfig, VllmGenerator
    from router.calibrate import exchange as ex
    from router.calibrate.dataset import load_questions
    from router.policy import CalibratedPolicy
    from router.strategies.base import SamplingConfig

    _stop_on_sigterm()
    settings = Settings()
    policy, difficulty = load_policy(settings)
    if not isinstance(policy, CalibratedPolicy) or difficulty is None:
        raise typer.BadParameter("no calibrated policy (run `ttc-serve calibrate` first)")
    if not (large_dir / "training.json").exists():
        raise typer.BadParameter(f"no trained generator at {large_dir}", param_hint="--large-dir")
    plan = ex.ExchangePlan(ratios=_floats(ratios, "--ratios"), oracle_samples=oracle_samples,
                           concurrency=concurrency)
    small, large = ex.PretrainedModel.from_dir(settings.generator_dir), ex.PretrainedModel.from_dir(large_dir)
    items = load_questions(questions, per_level)
    store = _bound_store(out_dir, _run_context(settings, items, policy, large=fingerprint(large_dir)))
    max_tokens = SamplingConfig().max_tokens

    async def run_large() -> None:
        if all(("large", "greedy", 0.0, q.qid) in store for q in items):
            return
        server = VllmServer(ServerSpec(large_dir, "large", max_model_len=settings.max_model_len,
                                       cpu_bind="0-1"))
        try:
            await start_all([server], settings.backend_start_timeout_s)
            generator = VllmGenerator(HttpBackendConfig(server.base_url, "large", settings.max_model_len,
                                                        timeout_s=900))
            try:
                await ex.collect_large(generator, large, items, store, plan, max_tokens)
            finally:
                await generator.aclose()
        finally:
            await asyncio.to_thread(server.stop)

    async def run_small() -> None:
        async with backend_pairs(settings) as pairs:
            await ex.collect_small(engines(settings, pairs),
                                   engines(settings, pairs, policy=policy, difficulty=difficulty),
                                   items, store, plan, small, large, max_tokens)

    asyncio.run(run_large())
    asyncio.run(run_small())
    summary = ex.summarise(store, items, plan, small, large,
                           policy.fitted.get("oracle_thresholds", [0.2, 0.4, 0.6, 0.8]))
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    figures = ex.write_figures(summary, out_dir)
    typer.echo(f"large greedy {summary['large_greedy']['accuracy']:.3f}")
    for ratio, entry in summary["ratios"].items():
        typer.echo(f"R={ratio}: small+auto {entry['small_auto']:.3f} vs large greedy "
                   f"{entry['large_greedy']:.3f} (x{entry['inference_multiplier']:.1f} inference)")
    typer.echo("figures: " + ", ".join(str(f) for f in figures))


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
