"""The paper's §7, pre-training compute against test-time compute (``make bench-exchange``, that is
``python -m bench.exchange``).

The small generator with ``auto`` (difficulty estimate charged, PRM counted) against a ~14x larger
generator decoding greedily, at matched total FLOPs. Total FLOPs are pre-training (3 forward passes'
worth per training token: forward + backward) plus inference. For a deployment that will serve
``D_inference = R * D_pretrain`` tokens, the large model's extra pre-training compute is spread over
those tokens, so a question the large model answers with ``T`` tokens for ``F_large`` FLOPs gives the
small model the budget

    B = F_large + (P_large - P_small) * T / (R * D_pretrain)

where ``P`` is each model's real pre-training compute (its own token count, from training.json).
``B / F_small_greedy`` is the paper's inference multiplier. Small R (few queries) gives the small
model a lot of test-time compute; large R leaves it about what the large model spends per query.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from ttc_serve.app import wiring
from ttc_serve.app.cli.common import bound_store, floats, stop_on_sigterm
from ttc_serve.app.settings import EMBEDDED_DIR, Settings
from ttc_serve.models.cost import FlopsModel
from ttc_serve.models.identity import fingerprint
from ttc_serve.models.protocols import GenerationRequest, Generator
from ttc_serve.router.calibrate import fit, plots, stats
from ttc_serve.router.calibrate.dataset import Question, load_questions
from ttc_serve.router.calibrate.grid import oracle_pass_rates, run_jobs, sampling_for
from ttc_serve.router.calibrate.records import RecordStore
from ttc_serve.router.engine import Engine, EngineRequest
from ttc_serve.router.errors import BudgetTooSmall
from ttc_serve.router.policy import CalibratedPolicy

PAPER_RATIOS = (0.16, 0.79, 22.0)


@dataclass(frozen=True)
class PretrainedModel:
    """What the exchange needs to know of a generator: its cost model and pre-training tokens."""

    name: str
    cost: FlopsModel
    pretraining_tokens: int

    @classmethod
    def from_dir(cls, model_dir: Path) -> PretrainedModel:
        report = json.loads((model_dir / "training.json").read_text())["report"]
        return cls(model_dir.name, FlopsModel.from_model_dir(model_dir), int(report["tokens"]))

    @property
    def pretraining_flops(self) -> float:
        return 3.0 * self.cost.flops_per_token * self.pretraining_tokens


@dataclass(frozen=True)
class ExchangePlan:
    ratios: tuple[float, ...] = PAPER_RATIOS
    oracle_samples: int = 16
    concurrency: int = 16


def matched_budget(large_flops: float, large_tokens: int, ratio: float, small: PretrainedModel,
                   large: PretrainedModel) -> float:
    """The small model's per-question budget that matches the large one's total FLOPs at ``ratio``
    (R = inference tokens / the large model's pre-training tokens)."""
    extra = large.pretraining_flops - small.pretraining_flops
    return large_flops + extra * large_tokens / (ratio * large.pretraining_tokens)


async def greedy_runs(generator: Generator, cost: FlopsModel, questions: Sequence[Question],
                      store: RecordStore, phase: str, max_tokens: int, concurrency: int) -> None:
    """One greedy answer per question, with its FLOPs (the whole prompt computed: no cache)."""
    gate = asyncio.Semaphore(concurrency)

    async def one(question: Question) -> None:
        async with gate:
            result = await generator.generate(GenerationRequest(
                prompts=[question.prompt], n=1, max_tokens=max_tokens, temperature=0.0))
        completion = result.completions[0][0]
        prompt_tokens = result.prompt_tokens[0]
        await asyncio.to_thread(store.add, {
            "phase": phase, "config": "greedy", "budget": 0.0, "qid": question.qid,
            "level": question.level, "correct": question.is_correct(completion.text),
            "flops_used": cost.sequence(prompt_tokens, 0, completion.tokens),
            "tokens": prompt_tokens + completion.tokens})

    await asyncio.gather(*(one(q) for q in questions if (phase, "greedy", 0.0, q.qid) not in store))


async def matched_auto_runs(engines: Sequence[Engine], questions: Sequence[Question], store: RecordStore,
                            plan: ExchangePlan, small: PretrainedModel, large: PretrainedModel) -> None:
    """``auto`` on the small model at each question's matched budget, for every ratio."""
    large_rows = {r["qid"]: r for r in store.phase("large")}
    jobs: list[Callable[[Engine], Awaitable[None]]] = []
    for ratio in plan.ratios:
        for index, question in enumerate(questions):
            row = large_rows[question.qid]
            budget = matched_budget(row["flops_used"], row["tokens"], ratio, small, large)
            if ("matched", _label(ratio), budget, question.qid) not in store:
                jobs.append(_auto_job(store, ratio, budget, index, question))
    await run_jobs(jobs, engines, plan.concurrency, "small + auto at matched FLOPs")


def _label(ratio: float) -> str:
    return f"auto R={ratio:g}"


def _auto_job(store: RecordStore, ratio: float, budget: float, index: int,
              question: Question) -> Callable[[Engine], Awaitable[None]]:
    async def job(engine: Engine) -> None:
        row: dict[str, Any] = {"phase": "matched", "config": _label(ratio), "budget": budget,
                               "ratio": ratio, "qid": question.qid, "level": question.level}
        try:
            out = await engine.complete(EngineRequest(
                prompt=question.prompt, flops_budget=budget, strategy="auto",
                sampling=sampling_for(index, engine.sampling)))
        except BudgetTooSmall:
            row.update(correct=False, flops_used=0.0, strategy="too_small", bin=None)
        else:
            row.update(correct=question.is_correct(out.result.text), flops_used=out.ledger.used,
                       strategy=out.strategy,
                       bin=out.difficulty.bin if out.difficulty is not None else None)
        await asyncio.to_thread(store.add, row)

    return job


async def collect_large(large_generator: Generator, large: PretrainedModel,
                        questions: Sequence[Question], store: RecordStore, plan: ExchangePlan,
                        max_tokens: int) -> None:
    """First step: the large model greedy (its FLOPs and tokens set the small model's budgets)."""
    await greedy_runs(large_generator, large.cost, questions, store, "large", max_tokens,
                      plan.concurrency)


async def collect_small(engines: Sequence[Engine], auto_engines: Sequence[Engine],
                        questions: Sequence[Question], store: RecordStore, plan: ExchangePlan,
                        small: PretrainedModel, large: PretrainedModel, max_tokens: int) -> None:
    """Second step, on the small model and its PRM: greedy (for the inference multiplier), oracle
    pass rates (for the bins) and auto at the matched budgets."""
    await greedy_runs(engines[0].generator, small.cost, questions, store, "small", max_tokens,
                      plan.concurrency)
    await oracle_pass_rates(engines, questions, plan.oracle_samples, store, plan.concurrency)
    await matched_auto_runs(auto_engines, questions, store, plan, small, large)


def summarise(store: RecordStore, questions: Sequence[Question], plan: ExchangePlan,
              small: PretrainedModel, large: PretrainedModel,
              oracle_thresholds: Sequence[float]) -> dict[str, Any]:
    wanted = {q.qid for q in questions}
    large_rows = {r["qid"]: r for r in store.phase("large") if r["qid"] in wanted}
    small_rows = {r["qid"]: r for r in store.phase("small") if r["qid"] in wanted}
    matched = {(r["ratio"], r["qid"]): r for r in store.phase("matched") if r["qid"] in wanted}
    rates = {r["qid"]: r["pass_rate"] for r in store.phase("oracle") if r["qid"] in wanted}
    oracle = fit.bins_from(rates, oracle_thresholds)
    qids = sorted(wanted)

    def accuracy(hits: list[bool]) -> dict[str, Any]:
        low, high = stats.wilson(sum(hits), len(hits))
        return {"accuracy": sum(hits) / len(hits), "ci95": [low, high], "n": len(hits)}

    def compare(group: list[str], ratio: float) -> dict[str, Any]:
        ours = [matched[(ratio, q)]["correct"] for q in group]
        theirs = [large_rows[q]["correct"] for q in group]
        diff, low, high = stats.paired_bootstrap(ours, theirs)
        return {"small_auto": accuracy(ours)["accuracy"], "large_greedy": accuracy(theirs)["accuracy"],
                "difference": diff, "ci95": [low, high], "questions": len(group),
                "mean_budget": sum(matched[(ratio, q)]["budget"] for q in group) / len(group),
                "mean_flops_used": sum(matched[(ratio, q)]["flops_used"] for q in group) / len(group)}

    small_greedy_flops = sum(r["flops_used"] for r in small_rows.values()) / max(1, len(small_rows))
    per_ratio: dict[str, Any] = {}
    for ratio in plan.ratios:
        entry = compare(qids, ratio)
        entry["inference_multiplier"] = entry["mean_budget"] / small_greedy_flops
        entry["by_oracle_bin"] = {str(b): compare([q for q in qids if oracle.get(q) == b], ratio)
                                  for b in sorted(set(oracle.values()))}
        levels = sorted({large_rows[q]["level"] for q in qids if large_rows[q]["level"] is not None})
        entry["by_level"] = {str(lv): compare([q for q in qids if large_rows[q]["level"] == lv], ratio)
                             for lv in levels}
        entry["strategies"] = dict(Counter(matched[(ratio, q)]["strategy"] for q in qids))
        per_ratio[f"{ratio:g}"] = entry
    return {
        "plan": asdict(plan), "questions": len(qids), "oracle_thresholds": list(oracle_thresholds),
        "models": {m.name: {"matmul_params": m.cost.matmul_params, "pretraining_tokens": m.pretraining_tokens,
                            "pretraining_flops": m.pretraining_flops} for m in (small, large)},
        "large_greedy": accuracy([large_rows[q]["correct"] for q in qids]),
        "large_greedy_mean_flops": sum(r["flops_used"] for r in large_rows.values()) / len(large_rows),
        "small_greedy": accuracy([small_rows[q]["correct"] for q in qids]) if small_rows else None,
        "small_greedy_mean_flops": small_greedy_flops,
        "ratios": per_ratio,
    }


def write_figures(summary: dict[str, Any], out_dir: Path) -> list[Path]:
    """Per oracle bin: accuracy of the large model greedy and of the small one with auto at each R,
    and the paired difference (small + auto - large) with its bootstrap interval."""
    out_dir.mkdir(parents=True, exist_ok=True)
    first = next(iter(summary["ratios"].values()))
    bins = list(first["by_oracle_bin"])
    series = {"large greedy": [(float(b), first["by_oracle_bin"][b]["large_greedy"]) for b in bins]}
    differences = {}
    for ratio, entry in summary["ratios"].items():
        label = f"small + auto, R={ratio} (x{entry['inference_multiplier']:.0f} inference)"
        series[label] = [(float(b), entry["by_oracle_bin"][b]["small_auto"]) for b in bins]
        differences[label] = [(entry["by_oracle_bin"][b]["difference"], *entry["by_oracle_bin"][b]["ci95"])
                              for b in bins]
    title = f"test split, {summary['questions']} questions, matched pre-training + inference FLOPs"
    accuracy, difference = out_dir / "exchange_by_bin.png", out_dir / "exchange_difference_by_bin.png"
    plots.lines(series, title, "oracle difficulty bin (1 = easiest)", accuracy, log_x=False)
    plots.difference_bars(bins, differences, title, "oracle difficulty bin (1 = easiest)",
                          "accuracy: small + auto - large greedy", difference)
    return [accuracy, difference]


def main(
    large_dir: Annotated[Path, typer.Option(help="the ~14x larger generator")] =
        EMBEDDED_DIR / "generator-large",
    questions: Annotated[str, typer.Option(help="embedded:test, or a prompt/answer JSONL")] = "embedded:test",
    per_level: Annotated[int | None, typer.Option(min=1, help="questions per level (embedded)")] = 16,
    ratios: Annotated[str, typer.Option(help="R = inference tokens / pre-training tokens")] = "0.16,0.79,22",
    oracle_samples: Annotated[int, typer.Option(min=1, max=256)] = 16,
    concurrency: Annotated[int, typer.Option(min=1, max=1024)] = 16,
    out_dir: Annotated[Path, typer.Option()] = Path("bench/results/exchange"),
) -> None:
    """The small generator with auto against the large one greedy, at matched total (pre-training +
    inference) FLOPs, per difficulty bin (resumable, like calibrate and bench)."""
    stop_on_sigterm()
    settings = wiring.offline(Settings())
    policy, difficulty = wiring.load_policy(settings)
    if not isinstance(policy, CalibratedPolicy) or difficulty is None:
        raise typer.BadParameter("no calibrated policy (run `ttc-serve calibrate` first)")
    if not (large_dir / "training.json").exists():
        raise typer.BadParameter(f"no trained generator at {large_dir}", param_hint="--large-dir")
    plan = ExchangePlan(ratios=floats(ratios, "--ratios"), oracle_samples=oracle_samples,
                        concurrency=concurrency)
    small, large = PretrainedModel.from_dir(settings.generator_dir), PretrainedModel.from_dir(large_dir)
    items = load_questions(questions, per_level)
    store = bound_store(out_dir, wiring.model_ids(settings).model_dump(), items, policy.model_dump_json(),
                        large=fingerprint(large_dir))
    max_tokens = wiring.sampling_defaults(settings).max_tokens

    async def run_large() -> None:
        if all(("large", "greedy", 0.0, q.qid) in store for q in items):
            return
        async with wiring.checkpoint_generator(settings, large_dir, "large", settings.max_model_len) as gen:
            await collect_large(gen, large, items, store, plan, max_tokens)

    async def run_small() -> None:
        async with wiring.backend_pairs(settings) as pairs:
            await collect_small(wiring.engines(settings, pairs),
                                wiring.engines(settings, pairs, policy, difficulty),
                                items, store, plan, small, large, max_tokens)

    asyncio.run(run_large())
    asyncio.run(run_small())
    summary = summarise(store, items, plan, small, large,
                        policy.fitted.get("oracle_thresholds", [0.2, 0.4, 0.6, 0.8]))
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    figures = write_figures(summary, out_dir)
    typer.echo(f"large greedy {summary['large_greedy']['accuracy']:.3f}")
    for ratio, entry in summary["ratios"].items():
        typer.echo(f"R={ratio}: small+auto {entry['small_auto']:.3f} vs large greedy "
                   f"{entry['large_greedy']:.3f} (x{entry['inference_multiplier']:.1f} inference)")
    typer.echo("figures: " + ", ".join(str(f) for f in figures))


if __name__ == "__main__":
    typer.run(main)
