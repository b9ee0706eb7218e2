"""Every test-time strategy the router can run, registered in one explicit dict."""

from __future__ import annotations

from ttc_serve.router.strategies.base import Strategy
from ttc_serve.router.strategies.beam_search import BeamSearch, DiverseVerifierTreeSearch, LookaheadSearch
from ttc_serve.router.strategies.best_of_n import BestOfNWeighted
from ttc_serve.router.strategies.majority import MajorityVote
from ttc_serve.router.strategies.revisions import SequentialRevisions

STRATEGIES: dict[str, Strategy] = {
    "best_of_n": BestOfNWeighted(),
    "majority": MajorityVote(),
    "beam_search": BeamSearch(),
    "lookahead": LookaheadSearch(),
    "dvts": DiverseVerifierTreeSearch(),
    "revisions": SequentialRevisions(),
}
