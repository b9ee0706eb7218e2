"""The README's figures, generated from the committed results, so that they cannot drift.

Each generated block sits between ``<!-- figures:NAME -->`` and ``<!-- /figures:NAME -->`` in
README.md. ``python -m bench.readme_figures`` rewrites them (``make figures``; ``make eval-models``,
``make bench`` and ``make bench-exchange`` call it); ``tests/test_docs.py`` fails when a block
differs from what the results say.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ttc_serve.app.settings import EMBEDDED_DIR, EMBEDDED_POLICY

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
README = ROOT / "README.md"


def _json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _config(strategy: str, params: dict[str, Any]) -> str:
    inside = ", ".join(f"{k}={v}" for k, v in params.items())
    return f"`{strategy}` ({inside})" if inside else f"`{strategy}`"


def _budget(value: float | str) -> str:
    return f"{float(value):.2g}".replace("e+0", "e").replace("e+", "e")


def models_block() -> str:
    """Sizes of the shipped models and the test-split tables their cards hold."""
    sizes = {name: _json(EMBEDDED_DIR / name / "training.json")["report"]["parameters"]
             for name in ("generator-small", "generator-large", "prm")}
    small, large = sizes["generator-small"], sizes["generator-large"]
    measured = _json(RESULTS / "models.json")
    levels = measured["small"]["levels"]
    samples = measured["small"]["samples_per_question"]
    lines = [
        f"Shipped: generator-small {small / 1e6:.2f}M parameters, generator-large "
        f"{large / 1e6:.1f}M ({large / small:.1f}× the small one), PRM {sizes['prm'] / 1e6:.1f}M "
        "(generator-large's body and the layers built on it).",
        "",
        f"Measured on the test split ({measured['questions']} questions, `bench/results/models.json`; "
        f"{samples} samples a question at T = {measured['small']['temperature']}):",
        "",
        f"| level | pass@1 | majority@{samples} | best-of-{samples} weighted | PRM AUROC | "
        "revisions (check and repair), attempt 1 → 4 | generator-large greedy |",
        "|---|---|---|---|---|---|---|",
    ]
    for level, row in levels.items():
        chain = " → ".join(f"{p:.3f}" for p in row["revision_pass@1_by_attempt"])
        auroc = row["prm_auroc"]
        auroc_text = "–" if auroc != auroc else f"{auroc:.3f}"  # NaN: no right sample to rank
        greedy = measured["large"]["levels"][level]["greedy"]
        lines.append(f"| {level} | {row['pass@1']:.3f} | {row[f'majority@{samples}']:.3f} | "
                     f"{row[f'best_of_{samples}_weighted']:.3f} | {auroc_text} | {chain} | {greedy:.3f} |")
    return "\n".join(lines)


def policy_block() -> str:
    """What the shipped policy chooses, and the cross-validated accuracy it was chosen on."""
    policy = _json(EMBEDDED_POLICY)
    configs: dict[str, list[str]] = {}
    for difficulty_bin, points in sorted(policy["table"].items()):
        for point in points:
            configs.setdefault(_config(point["strategy"], point["params"]), []).append(
                f"bin {difficulty_bin} at {_budget(point['budget'])}")
    fitted = policy["fitted"]
    cv = fitted["cross_validated_accuracy"]
    if len(configs) == 1:
        [(config, _)] = configs.items()
        choice = (f"The shipped policy gives every difficulty bin and every budget the same "
                  f"configuration, {config}, so `auto` skips the difficulty estimate.")
    else:
        choice = "The shipped policy chooses by bin and budget: " + "; ".join(
            f"{config} for {', '.join(cells)}" for config, cells in configs.items()) + "."
    accuracy = ", ".join(f"{cell['per_bin_choice']:.3f} at {_budget(budget)}" for budget, cell in cv.items())
    return (f"{choice} It was fitted on {fitted['split_questions']} dev questions; its 2-fold "
            f"cross-validated accuracy is {accuracy} (`bench/results/calibration/summary.json`).")


def bench_block() -> str:
    """auto against the best fixed configuration and majority on the test split."""
    summary = _json(RESULTS / "auto" / "summary.json")
    lines = [f"On the test split ({summary['questions']} questions, `bench/results/auto/summary.json`):", "",
             "| budget (FLOPs) | auto | best fixed configuration | auto − best fixed [95% CI] | majority | "
             "share of requests with a difficulty estimate |",
             "|---|---|---|---|---|---|"]
    for budget, entry in summary["budgets"].items():
        best = entry["auto_minus_best_fixed"]
        low, high = best["ci95"]
        lines.append(
            f"| {_budget(budget)} | {entry['auto']['accuracy']:.3f} | {best['best_fixed']} "
            f"{entry['fixed'][best['best_fixed']]['accuracy']:.3f} | {best['difference']:+.3f} "
            f"[{low:+.3f}, {high:+.3f}] | {entry['fixed']['majority']['accuracy']:.3f} | "
            f"{entry['auto']['estimated_share']:.2f} |")
    return "\n".join(lines)


def exchange_block() -> str:
    """Small + auto against the large generator greedy at matched total FLOPs."""
    summary = _json(RESULTS / "exchange" / "summary.json")
    rows = [f"R = {ratio}: {entry['small_auto']:.3f} against {entry['large_greedy']:.3f}, "
            f"{entry['difference']:+.3f} [{entry['ci95'][0]:+.3f}, {entry['ci95'][1]:+.3f}]"
            for ratio, entry in summary["ratios"].items()]
    return (f"At matched pre-training + inference FLOPs, small + `auto` against generator-large "
            f"greedy on {summary['questions']} test questions (`bench/results/exchange/summary.json`): "
            + "; ".join(rows) + ".")


BLOCKS: dict[str, Callable[[], str]] = {
    "models": models_block, "policy": policy_block, "bench": bench_block, "exchange": exchange_block}


def _pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- figures:{name} -->)\n(.*?)\n?(<!-- /figures:{name} -->)", re.S)


def blocks_in(text: str) -> dict[str, str]:
    """The generated blocks as they stand in a README text."""
    found = {}
    for name in BLOCKS:
        match = _pattern(name).search(text)
        if match is not None:
            found[name] = match.group(2)
    return found


def render(text: str) -> str:
    for name, make in BLOCKS.items():
        pattern = _pattern(name)
        match = pattern.search(text)
        if match is None:
            raise ValueError(f"README.md has no <!-- figures:{name} --> block")
        text = text[:match.start()] + f"{match.group(1)}\n{make()}\n{match.group(3)}" + text[match.end():]
    return text


def main() -> None:
    README.write_text(render(README.read_text()))
    print(f"wrote the generated figures of {README}")


if __name__ == "__main__":
    main()
