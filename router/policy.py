"""The calibrated policy: for each difficulty bin and FLOPs budget, the compute-optimal strategy.

A versioned JSON artifact written by ``ttc-serve calibrate``. It names the models it was fitted for
(fingerprints of their checkpoints: a policy fitted for other models is refused at start-up), the
difficulty predictor's settings and bin thresholds, and per bin a list of budget grid points, each
with the strategy and parameters that won there. ``choose`` is pure: a budget between grid points
gets the configuration of the largest grid point it covers (that configuration then sizes itself to
the actual budget); a budget below the grid gets the smallest grid point's configuration. Where every
bin gets the same configuration at a budget, ``auto`` skips the difficulty estimate there.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ttc_serve.models.identity import same_model

POLICY_VERSION = 1


class Policy(Protocol):
    """Maps a difficulty bin (None: not predicted) and the remaining budget to a strategy."""

    def choose(self, difficulty_bin: int | None, budget: float) -> tuple[str, dict[str, Any]]: ...

    def depends_on_difficulty(self, budget: float) -> bool: ...


@dataclass(frozen=True)
class FixedPolicy:
    """The policy without a calibrated one: one strategy for every bin and budget."""

    strategy: str = "best_of_n"

    def choose(self, difficulty_bin: int | None, budget: float) -> tuple[str, dict[str, Any]]:
        return self.strategy, {}

    def depends_on_difficulty(self, budget: float) -> bool:
        return False


class PolicyMismatch(Exception):
    """The policy was fitted for other models than the ones being served."""


class GridPoint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    budget: float = Field(gt=0)
    strategy: str
    params: dict[str, Any] = Field(default_factory=dict)
    accuracy: float | None = Field(None, ge=0, le=1, description="cross-validated, on the dev split")


class DifficultySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["verifier"] = "verifier"
    samples: int = Field(4, ge=1, le=64)
    thresholds: list[float] = Field(min_length=1, description="ascending PRM-score edges of the bins")

    @model_validator(mode="after")
    def _ascending(self) -> DifficultySpec:
        if self.thresholds != sorted(self.thresholds):
            raise ValueError("thresholds must ascend")
        return self

    @property
    def bins(self) -> int:
        return len(self.thresholds) + 1


class ModelIds(BaseModel):
    model_config = ConfigDict(extra="forbid")

    generator: str
    verifier: str


class CalibratedPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    models: ModelIds
    difficulty: DifficultySpec
    table: dict[int, list[GridPoint]] = Field(description="bin -> grid points, budgets ascending")
    fitted: dict[str, Any] = Field(default_factory=dict, description="how and on what it was fitted")

    @model_validator(mode="after")
    def _total(self) -> CalibratedPolicy:
        missing = set(range(1, self.difficulty.bins + 1)) - set(self.table)
        if missing:
            raise ValueError(f"no grid points for bins {sorted(missing)}")
        for points in self.table.values():
            if not points:
                raise ValueError("every bin needs at least one grid point")
            points.sort(key=lambda p: p.budget)
        return self

    def choose(self, difficulty_bin: int | None, budget: float) -> tuple[str, dict[str, Any]]:
        """Pure and total: any bin (None, or out of range, is clamped) and any budget."""
        bins = self.difficulty.bins
        b = bins // 2 + 1 if difficulty_bin is None else min(bins, max(1, difficulty_bin))
        points = self.table[b]
        i = bisect.bisect_right([p.budget for p in points], budget) - 1
        point = points[max(0, i)]
        return point.strategy, dict(point.params)

    def depends_on_difficulty(self, budget: float) -> bool:
        """Whether bins would get different configurations at this budget (else ``auto`` need not
        spend anything on predicting the bin)."""
        return len({repr(self.choose(b, budget)) for b in range(1, self.difficulty.bins + 1)}) > 1

    def check_models(self, served: ModelIds) -> None:
        """Refuse to serve models the policy was not fitted for (by content, not by path)."""
        if not (same_model(served.generator, self.models.generator)
                and same_model(served.verifier, self.models.verifier)):
            raise PolicyMismatch(
                f"the policy was fitted for generator {self.models.generator} and PRM "
                f"{self.models.verifier}, but this server runs generator {served.generator} and PRM "
                f"{served.verifier}. Fit one for these models with `ttc-serve calibrate`, point "
                "TTC_POLICY_PATH at a matching policy, or set TTC_POLICY_PATH=none to serve with "
                "best-of-N as the auto strategy.")

    @classmethod
    def load(cls, path: Path) -> CalibratedPolicy:
        return cls.model_validate_json(path.read_text())

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.model_dump(mode="json"), indent=1) + "\n")
