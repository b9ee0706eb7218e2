"""Small statistics for the benchmark: confidence intervals, paired bootstrap, FLOPs efficiency."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence


def wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion."""
    if n == 0:
        return (0.0, 1.0)
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def paired_bootstrap(a: Sequence[bool], b: Sequence[bool], resamples: int = 2000,
                     seed: int = 0) -> tuple[float, float, float]:
    """Mean of a - b over paired questions and its 95% bootstrap interval."""
    if len(a) != len(b) or not a:
        raise ValueError("paired samples of equal, non-zero length are needed")
    diffs = [int(x) - int(y) for x, y in zip(a, b, strict=True)]
    rng = random.Random(seed)
    n = len(diffs)
    means = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    return (sum(diffs) / n, means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1])


def flops_to_reach(curve: Sequence[tuple[float, float]], target: float) -> tuple[float, str]:
    """The FLOPs at which an accuracy-vs-FLOPs curve first reaches ``target``, interpolated
    log-linearly between measured points. Returns (flops, how): "measured"; "above" when the curve
    never reaches it (flops is then the largest measured point, a lower bound); "below" when even
    the smallest point beats it (an upper bound)."""
    points = sorted(curve)
    if not points:
        raise ValueError("empty curve")
    if points[0][1] >= target:
        return points[0][0], "below"
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        if y1 >= target > y0:
            t = (target - y0) / (y1 - y0)
            return math.exp(math.log(x0) + t * (math.log(x1) - math.log(x0))), "measured"
    return points[-1][0], "above"
