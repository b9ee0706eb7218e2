"""Figures for calibration and the benchmark (matplotlib, written as PNG)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ttc_serve.router.calibrate.fit import Table


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


Points = Sequence[tuple[float, float]]


def accuracy_panels(table: Table, title: str, out: Path,
                    extra: Mapping[int, Mapping[str, Points]] | None = None) -> None:
    """One panel per group (difficulty level or bin), one line per configuration: accuracy vs FLOPs
    budget (log scale). ``extra``: more lines per group, as (budget, accuracy) points."""
    plt = _pyplot()
    groups = sorted(table)
    fig, axes = plt.subplots(1, len(groups), figsize=(3.6 * len(groups), 3.6), sharey=True,
                             squeeze=False)
    for ax, g in zip(axes[0], groups, strict=True):
        for config, by_budget in sorted(table[g].items()):
            xs = sorted(by_budget)
            style = "--" if config.startswith("revisions") else "-"
            ax.plot(xs, [by_budget[x]["accuracy"] for x in xs], style, marker="o", ms=3, label=config)
        for label, points in (extra or {}).get(g, {}).items():
            ordered = sorted(points)
            ax.plot([p[0] for p in ordered], [p[1] for p in ordered], "-", color="black", lw=2.2,
                    marker="s", ms=4, label=label)
        ax.set_xscale("log")
        ax.set_title(f"{title} {g}")
        ax.set_xlabel("FLOPs budget")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("accuracy")
    axes[0][-1].legend(fontsize=6, loc="best")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def agreement_heatmap(matrix: Sequence[Sequence[int]], title: str, out: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 3.8))
    ax.imshow(matrix, cmap="Blues")
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            ax.text(j, i, str(count), ha="center", va="center", fontsize=8)
    ticks = range(len(matrix))
    ax.set_xticks(list(ticks), [str(t + 1) for t in ticks])
    ax.set_yticks(list(ticks), [str(t + 1) for t in ticks])
    ax.set_xlabel("predicted bin (PRM)")
    ax.set_ylabel("oracle bin (pass@1)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def lines(series: Mapping[str, Points], title: str, xlabel: str, out: Path,
          log_x: bool = True) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for label, points in series.items():
        xs, ys = zip(*sorted(points), strict=True)
        ax.plot(xs, ys, marker="o", ms=3, label=label, lw=2.2 if label.startswith("auto") else 1.2)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def difference_bars(groups: Sequence[str], series: Mapping[str, Sequence[tuple[float, float, float]]],
                    title: str, xlabel: str, ylabel: str, out: Path) -> None:
    """Grouped bars with interval whiskers: per series, one (value, low, high) per group."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    width = 0.8 / max(1, len(series))
    for k, (label, values) in enumerate(series.items()):
        xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(groups))]
        ys = [v[0] for v in values]
        errors = [[v[0] - v[1] for v in values], [v[2] - v[0] for v in values]]
        ax.bar(xs, ys, width, yerr=errors, capsize=2, label=label)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(range(len(groups)), list(groups))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
