"""What a running request has done so far, reported once per backend round for streaming clients.

Strategies call ``report`` at the end of each round (a sampling wave, a beam round, a revision); the
event carries the ledger's figures at that moment, so a client sees FLOPs rise as they are spent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ttc_serve.router.budget import Ledger


@dataclass(frozen=True)
class ProgressEvent:
    stage: str  # "difficulty" while the prompt's difficulty is estimated, then the strategy's name
    round: int  # rounds reported so far in this stage (0: the stage starts)
    flops_used: float
    samples: int  # completions drawn so far, every stage together
    leading_answer: str | None  # the answer that would win if the search stopped now


ProgressListener = Callable[[ProgressEvent], None]


class Progress:
    def __init__(self, ledger: Ledger, listener: ProgressListener | None = None):
        self.ledger = ledger
        self.listener = listener
        self.stage = ""
        self.round = 0

    def start(self, stage: str) -> None:
        self.stage, self.round = stage, 0
        self._emit(None)

    def report(self, leading_answer: str | None) -> None:
        self.round += 1
        self._emit(leading_answer)

    def _emit(self, leading_answer: str | None) -> None:
        if self.listener is not None:
            self.listener(ProgressEvent(stage=self.stage, round=self.round, flops_used=self.ledger.used,
                                        samples=self.ledger.completions, leading_answer=leading_answer))
