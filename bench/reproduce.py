"""Do the training commands rebuild the shipped checkpoints? (the embedded models' reproducibility)

``python -m bench.reproduce REBUILT_DIR`` compares each checkpoint rebuilt under ``REBUILT_DIR``
(``generator-small``, ``prm``, ``generator-large``; as written by ``ttc-serve train ... --out``) with
the shipped one. Weights that are byte for byte the same settle it: the measured tables are then the
shipped ones. Otherwise it compares the tables measured on the rebuild (``REBUILT_DIR/models.json``,
from ``bench.eval_models --out``) with ``bench/results/models.json``, each rate within the noise of
two runs on the same questions: |difference| <= 1.96 * sqrt(2 p (1 - p) / n), p the two runs' mean
and n the questions per level. (That bound treats each question as one coin; a question's 16
samples make pass@1 less noisy than that, so the bound is loose for pass@1 and right for the others.)
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import typer

from bench.eval_models import RESULTS
from ttc_serve.app.settings import EMBEDDED_DIR

CHECKPOINTS = ("generator-small", "prm", "generator-large")
RATES = ("pass@1", "coverage@16", "majority@16", "best_of_16_weighted")


def weights_digest(checkpoint: Path) -> str | None:
    path = checkpoint / "model.safetensors"
    if not path.exists():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()


def within_noise(shipped: float, rebuilt: float, questions: int) -> tuple[float, bool]:
    """The difference and whether it is inside the two-run 95% bound (see the module docstring)."""
    p = (shipped + rebuilt) / 2
    bound = 1.96 * math.sqrt(2 * p * (1 - p) / questions)
    difference = rebuilt - shipped
    return difference, abs(difference) <= bound + 1e-12


def compare_tables(shipped: dict[str, Any], rebuilt: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per rate that both reports hold: level, metric, the two values, within noise."""
    rows = []
    questions = int(shipped.get("questions", 600)) // 5
    for model, metrics in (("small", RATES), ("large", ("greedy", "pass@1"))):
        levels = shipped.get(model, {}).get("levels", {})
        for level, table in levels.items():
            other = rebuilt.get(model, {}).get("levels", {}).get(level)
            if other is None:
                continue
            n = int(table.get("questions", questions))
            named = [(m, table[m], other[m]) for m in metrics if m in table and m in other]
            attempts = zip(table.get("revision_pass@1_by_attempt", []),
                           other.get("revision_pass@1_by_attempt", []), strict=False)
            named += [(f"revision attempt {k}", a, b) for k, (a, b) in enumerate(attempts, 1)]
            for metric, a, b in named:
                difference, ok = within_noise(a, b, n)
                rows.append({"model": model, "level": level, "metric": metric, "shipped": a,
                             "rebuilt": b, "difference": difference, "within_noise": ok})
    return rows


def main(rebuilt: Path, shipped_dir: Path = EMBEDDED_DIR,
         shipped_tables: Path = RESULTS / "models.json",
         out: Path = RESULTS / "reproduce.json") -> None:
    """Compare rebuilt checkpoints with the shipped ones and write the verdict to ``out`` (the
    model cards quote it); exit 1 if it is not a match."""
    report: dict[str, Any] = {"checkpoints": {}}
    for name in CHECKPOINTS:
        ours, theirs = weights_digest(shipped_dir / name), weights_digest(rebuilt / name)
        if theirs is not None:
            report["checkpoints"][name] = {"identical_weights": ours == theirs,
                                           "shipped_sha256": ours, "rebuilt_sha256": theirs}
    for name, facts in report["checkpoints"].items():
        typer.echo(f"{name}: weights {'identical' if facts['identical_weights'] else 'differ'}")
    failed = False
    tables = rebuilt / "models.json"
    if tables.exists():
        rows = compare_tables(json.loads(shipped_tables.read_text()), json.loads(tables.read_text()))
        report["tables"] = rows
        for row in rows:
            mark = "ok " if row["within_noise"] else "OUT"
            typer.echo(f"{mark} {row['model']} L{row['level']} {row['metric']}: "
                       f"{row['shipped']:.3f} -> {row['rebuilt']:.3f} ({row['difference']:+.3f})")
        failed = not all(row["within_noise"] for row in rows)
    elif not all(facts["identical_weights"] for facts in report["checkpoints"].values()):
        typer.echo(f"weights differ: measure the rebuild (TTC_GENERATOR_DIR=... TTC_PRM_DIR=... "
                   f"python -m bench.eval_models --large-dir ... --out {tables}), then run this again")
        failed = True
    report["rebuilt"] = str(rebuilt)
    out.write_text(json.dumps(report, indent=2) + "\n")
    if failed:
        raise typer.Exit(1)


if __name__ == "__main__":
    typer.run(main)
