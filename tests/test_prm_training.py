"""The PRM recipe's parts: Math-Shepherd labels, the encoding, the head fit."""

from __future__ import annotations

from ttc_serve.models.embedded import task
from ttc_serve.training import prm
from ttc_serve.training.tokenizer import token_ids


def test_soft_labels_follow_math_shepherd() -> None:
    problem = task.Problem((10, 5, 3), ("+", "-"), level=2)
    samples = [["10+5=15\n15-3=12\nanswer: 12\n", "10+5=14\n14-3=11\nanswer: 11\n"]]
    asked: list[str] = []

    def rollout(prefixes: list[str]) -> list[float]:
        asked.extend(prefixes)
        return [0.25 * (i + 1) for i in range(len(prefixes))]

    right, wrong = prm.prm_labels([problem], samples, rollout)
    assert asked == ["question: 10+5-3\n10+5=15\n", "question: 10+5-3\n10+5=15\n15-3=12\n"]
    assert right.labels == (0.25, 0.5, 1.0)  # rollout values, then the exact final verdict
    assert wrong.labels == (0.0, 0.0, 0.0)  # after an invalid step: the checker's 0


def test_encoded_tags_carry_the_labels_in_the_newlines_place() -> None:
    example = prm.PrmExample("question: 10+5\n", ("10+5=15", "answer: 15"), (0.75, 1.0))
    input_ids, attention, targets = prm.encode_prm([example])
    tag = token_ids()[task.STEP_TAG]
    tags = (input_ids[0] == tag).nonzero().flatten().tolist()
    assert int(attention.sum()) == 1 + len("question: 10+5\n10+5=15") + 1 + len("answer: 15") + 1
    assert tags == [len("question: 10+5\n10+5=15") + 1, int(attention.sum()) - 1]
    assert targets[0, tags].tolist() == [0.75, 1.0]
    assert int((~targets.isnan()).sum()) == 2


def test_the_head_fit_learns_how_pooled_badness_maps_to_the_labels() -> None:
    import torch

    from ttc_serve.training.lm import ModelSize
    from ttc_serve.training.prm_model import ProcessRewardModel, prm_config

    head = ProcessRewardModel(prm_config(ModelSize(32, 1, 1, 32))).score
    first = head[0]
    assert isinstance(first, torch.nn.Linear)
    with torch.no_grad():
        for param in head.parameters():
            param.zero_()
        first.weight[0, 0] = 1.0  # the built head's two units: pooled badness, and 1
        first.weight[1, 1] = 1.0
    pooled = torch.linspace(0, 6, 200)
    features = torch.zeros(200, 32)
    features[:, 0], features[:, 1] = pooled, 1.0
    labels = torch.sigmoid(3.0 * (2.0 - pooled))  # steeper and later than the built start
    before = torch.softmax(head(features), -1)[:, 1]
    loss = prm.fit_head(head, features, labels, steps=300, lr=0.05)
    after = torch.softmax(head(features), -1)[:, 1].detach()
    assert loss < 0.45
    assert (after - labels).abs().mean() < 0.05 < (before - labels).abs().mean()
