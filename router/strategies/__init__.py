"""Every test-time strategy the router can run, registered in one explicit dict."""

from __future__ import annotations

from router.strategies.base import Strategy
from router.strategies.beam_search import BeamSearch, DiverseVerifierTreeSearch, LookaheadSearch
from router.strategies.best_of_n import BestOfNWeighted
from router.strategies.majority import MajorityVote
from router.strategies.revisions import SequentialRevisions

STRATEGIES: dict[str, Strategy] = {
    "best_of_n": BestOfNWeighted(),
    "majority": MajorityVote(),
    "beam_search": BeamSearch(),
    "lookahead": LookaheadSearch(),
    "dvts": DiverseVerifierTreeSearch(),
    "revisions": SequentialRevisions(),
}
