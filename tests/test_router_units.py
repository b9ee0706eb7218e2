"""Selection rules, the ledger, and the budget-sizing invariants (property-tested)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ttc_serve.models.cost import FlopsModel
from ttc_serve.router.budget import CostModels, InsufficientBudget, Ledger, prm_tokens_bound
from ttc_serve.router.selection import (
    Scored,
    aggregate,
    answer_classes,
    extract_answer,
    majority,
    split_steps,
    weighted_best_of_n,
)


def test_weighted_best_of_n_sums_scores_per_answer() -> None:
    cands = [Scored("7", 0.4), Scored("8", 0.9), Scored("7", 0.6), Scored(None, 5.0)]
    assert weighted_best_of_n(cands) == "7"  # 1.0 beats 0.9; no-answer candidates do not vote
    assert weighted_best_of_n([Scored(None, 1.0)]) is None
    assert majority(["1", "2", "2", None]) == "2"


def test_aggregations_and_answers() -> None:
    assert aggregate([0.9, 0.5, 0.8], "last") == 0.8
    assert aggregate([0.9, 0.5, 0.8], "min") == 0.5
    assert aggregate([0.5, 0.5], "prod") == 0.25
    assert aggregate([], "last") == 0.0
    assert extract_answer("1+2=3\nanswer: 3\n") == "3"
    assert extract_answer("so \\boxed{42}.") == "42"
    assert extract_answer("no final line") is None
    assert split_steps("a\n\n b \n") == ["a", "b"]


def test_empty_answers_are_no_answers() -> None:
    assert extract_answer("x \\boxed{} and \\boxed{ }") is None
    assert extract_answer("\\boxed{4} then \\boxed{}") == "4"  # the last non-empty box
    assert extract_answer("answer:\nanswer: \n") is None


def test_answer_sentences_of_instruction_tuned_models() -> None:
    assert extract_answer("6 + 3 = 9. The answer is 9.") == "9"
    assert extract_answer("The answer is 9, as 6 and 3 make nine") == "9"
    assert extract_answer("The final answer is 3.5.") == "3.5"
    assert extract_answer("So the answer is x + 1.\nanswer: 7") == "7"  # the last line that gives one


def test_math_answer_classes_join_equal_values_and_exact_keeps_strings() -> None:
    answers = ["0.5", "\\frac{1}{2}", "19", None, "19.0", "1/2", "x+1", "1+x"]
    math = answer_classes(answers, "math")
    assert [math(a) for a in answers] == ["0.5", "0.5", "19", None, "19", "0.5", "x+1", "x+1"]
    exact = answer_classes(answers, "exact")
    assert [exact(a) for a in answers] == answers
    votes = ["3", "0.5", "\\frac{1}{2}", "3", "1/2"]
    assert majority(votes) == "3"  # as strings, 3 has two votes and each form of a half one
    assert majority([math(a) for a in votes]) == "0.5"  # as values, a half has three


def test_ledger_refuses_what_it_cannot_pay() -> None:
    ledger = Ledger(budget=100.0)
    ledger.charge("generator", 60.0)
    ledger.require(40.0)
    with pytest.raises(InsufficientBudget):
        ledger.require(40.5)


COSTS = CostModels(generator=FlopsModel(870_000, 4, 128), verifier=FlopsModel(850_000, 4, 128))


@given(budget=st.floats(1e6, 1e13), prompt=st.integers(1, 300), max_tokens=st.integers(1, 300),
       spent=st.floats(0, 1))
def test_worst_case_sizing_never_overspends(budget: float, prompt: int, max_tokens: int,
                                            spent: float) -> None:
    """The sizing rule in strategies.sampling: n = floor((remaining - prompt) / per-sample worst)."""
    ledger = Ledger(budget=budget)
    ledger.charge("generator", budget * spent)
    unit = COSTS.sample_worst(prompt, max_tokens) + COSTS.score_worst(
        prm_tokens_bound(prompt, max_tokens, max_tokens))
    prompt_cost = COSTS.generator.span(0, prompt)
    n = int((ledger.remaining - prompt_cost) // unit)
    if n >= 1:
        gen_worst = COSTS.generator.generation(prompt, 0, [max_tokens] * n)
        prm_worst = n * COSTS.score_worst(prm_tokens_bound(prompt, max_tokens, max_tokens))
        assert gen_worst + prm_worst <= ledger.remaining * (1 + 1e-12)
        # and any real outcome (shorter samples, fewer steps, cache hits) costs no more
        real = COSTS.generator.generation(prompt, prompt // 2, [max(1, max_tokens // 3)] * n)
        assert real <= gen_worst


def test_revision_split_follows_the_ratio() -> None:
    from ttc_serve.router.strategies.revisions import split

    assert split(16, 1.0) == (4, 4)
    assert split(16, 16.0) == (1, 16)
    assert split(16, 1 / 16) == (16, 1)
    parallel, sequential = split(64, 4.0)
    assert parallel * sequential <= 64 and sequential / parallel == 4.0


def test_survivor_rules() -> None:
    from ttc_serve.models.protocols import Completion
    from ttc_serve.router.strategies.tree_search import Node, keep_best_per_parent, keep_top

    groups = [[Node(score=0.1, group=0), Node(score=0.9, group=0)],
              [Node(score=0.5, group=1), Node(score=0.4, group=1)]]
    assert [n.score for n in keep_top(groups, 2)] == [0.9, 0.5]  # beam search: global top-k
    assert [n.score for n in keep_best_per_parent(groups, 1)] == [0.9, 0.5]  # DVTS: per subtree
    child = Node(text="a\n", steps=["a"], node_id=3).child(Completion("answer: 4", "stop", 9), "\n")
    assert child.finished and child.parent_id == 3 and child.steps == ["a", "answer: 4"]
    open_child = Node().child(Completion("12+3=15\n", "stop", 8), "\n")
    assert not open_child.finished


def test_a_beam_the_search_left_unfinished_is_cut_not_stopped() -> None:
    from ttc_serve.models.protocols import Completion
    from ttc_serve.router.strategies.tree_search import Node

    step = Node().child(Completion(text="34+1=35\n", finish_reason="stop", tokens=6), "\n")
    assert not step.finished and step.choice().finish_reason == "length"
    done = step.child(Completion(text="answer: 35\n", finish_reason="stop", tokens=4), "\n")
    assert done.finished and done.choice().finish_reason == "stop" and done.choice().answer == "35"
