"""Every test-time strategy the router can run, registered in one explicit dict."""

from __future__ import annotations

from router.strategies.base import Strategy
from router.strategies.best_of_n import BestOfNWeighted
from router.strategies.majority import MajorityVote

STRATEGIES: dict[str, Strategy] = {
    "best_of_n": BestOfNWeighted(),
    "majority": MajorityVote(),
}
