"""The built PRM: its body reads what the generator read, its tag scores are the pooled badness of
the generator's digits, and vLLM serves it as built."""

from __future__ import annotations

import asyncio

import pytest
import torch
from safetensors.torch import load_file
from transformers import LlamaForCausalLM, Qwen2Config

from tests.conftest import Backends
from ttc_serve.app import wiring
from ttc_serve.app.settings import EMBEDDED_DIR, Settings
from ttc_serve.models.embedded import task
from ttc_serve.training.prm_model import DIGITS, ProcessRewardModel, VerifierShape, build_verifier
from ttc_serve.training.tokenizer import build_tokenizer

GENERATOR = EMBEDDED_DIR / "generator-small"
QUESTION = "question: 37+85-12\n"
SOLUTIONS = (["37+85=122", "122-12=110", "answer: 110"],  # right
             ["37+85=122", "122-12=119", "answer: 119"],  # a slipped digit
             ["37+85=112", "112-12=100"])  # no answer line yet


def _generator() -> LlamaForCausalLM:
    generator = LlamaForCausalLM.from_pretrained(GENERATOR, dtype=torch.float32)
    generator.eval()  # type: ignore[no-untyped-call]
    return generator


def _ids(text: str) -> torch.Tensor:
    return torch.tensor([build_tokenizer().encode(text).ids])


def _reference_scores(generator: LlamaForCausalLM, steps: list[str], shape: VerifierShape) -> list[float]:
    """What the verifier should say, from the generator's own logits on the untagged text."""
    vocab = build_tokenizer().get_vocab()
    digit_ids = [vocab[d] for d in DIGITS]
    ids = _ids(QUESTION + "".join(f"{s}\n" for s in steps))[0]
    with torch.no_grad():
        logits = generator(ids[None]).logits[0][:, digit_ids]
    question_end = len(QUESTION)  # the BOS shifts by one: the question's newline is at len(QUESTION)
    badness = torch.zeros(len(ids))
    for i in range(question_end + 1, len(ids)):
        if int(ids[i]) in digit_ids:
            written = digit_ids.index(int(ids[i]))
            gaps = logits[i - 1] - logits[i - 1, written]
            gaps = torch.cat([gaps[:written], gaps[written + 1:]])
            a = shape.hinge_slope
            badness[i] = (torch.nn.functional.silu(a * (gaps + shape.hinge_margin)) / a).sum()
    tags = [i for i in range(question_end + 1, len(ids)) if int(ids[i]) == vocab["\n"]]
    scores = []
    for tag in tags:
        seen = badness[: tag + 1]
        pooled = float((torch.softmax(shape.pool_sharpness * seen, 0) * seen).sum())
        scores.append(float(torch.sigmoid(torch.tensor(shape.gamma * (shape.delta - pooled)))))
    return scores


def _scores(model: ProcessRewardModel, steps: list[str]) -> list[float]:
    tag = build_tokenizer().get_vocab()[task.STEP_TAG]
    ids = _ids(task.prm_input(QUESTION, steps))
    with torch.no_grad():
        good = torch.softmax(model(ids, torch.ones_like(ids)).float(), -1)[0, :, 1]
    return [float(good[i]) for i in range(ids.shape[1]) if int(ids[0, i]) == tag]


def test_the_body_reads_exactly_the_text_the_generator_read() -> None:
    model, _ = build_verifier(GENERATOR)
    generator = _generator()
    body = generator.config.num_hidden_layers
    seen: dict[str, torch.Tensor] = {}
    generator.model.norm.register_forward_pre_hook(lambda _m, args: seen.__setitem__("gen", args[0]))
    model.model.layers[body - 1].register_forward_hook(
        lambda _m, _a, out: seen.__setitem__("prm", out[0] if isinstance(out, tuple) else out))
    steps = SOLUTIONS[1]
    with torch.no_grad():
        generator(_ids(QUESTION + "".join(f"{s}\n" for s in steps)))
        ids = _ids(task.prm_input(QUESTION, steps))
        model(ids, torch.ones_like(ids))
    hidden = generator.config.hidden_size
    torch.testing.assert_close(seen["prm"][..., :hidden], seen["gen"], atol=1e-4, rtol=1e-4)


def test_tag_scores_are_the_pooled_badness_of_the_generators_digits() -> None:
    model, _ = build_verifier(GENERATOR)
    generator = _generator()
    for steps in SOLUTIONS:
        expected = _reference_scores(generator, steps, VerifierShape())
        assert len(expected) == len(steps)
        torch.testing.assert_close(torch.tensor(_scores(model, steps)), torch.tensor(expected),
                                   atol=1e-3, rtol=1e-3)
    right, slipped = (_scores(model, s)[-1] for s in SOLUTIONS[:2])
    assert right > slipped


def _shipped() -> ProcessRewardModel:
    prm_dir = Settings().prm_dir
    model = ProcessRewardModel(Qwen2Config.from_pretrained(prm_dir))
    model.load_state_dict({k: v.float() for k, v in load_file(prm_dir / "model.safetensors").items()})
    return model.eval()


def test_vllm_tokenizes_the_prm_input_as_the_recipe_does(backends: Backends) -> None:
    import httpx

    text = task.prm_input(QUESTION, SOLUTIONS[1])
    reply = httpx.post(f"{backends.prm.base_url}/tokenize",
                       json={"model": Settings().prm_served_name, "prompt": text}, timeout=30)
    reply.raise_for_status()
    assert reply.json()["tokens"] == build_tokenizer().encode(text).ids  # spaces and newlines kept


@pytest.mark.parametrize("steps", SOLUTIONS)
def test_vllm_serves_the_shipped_prm_as_built(backends: Backends, steps: list[str]) -> None:
    settings = Settings()

    async def served() -> list[float]:
        pair = wiring.backend_pair(settings, [backends.generator.base_url], [backends.prm.base_url])
        try:
            return (await pair.verifier.score([QUESTION], [steps])).step_scores[0]
        finally:
            await pair.aclose()

    torch.testing.assert_close(torch.tensor(asyncio.run(served())),
                               torch.tensor(_scores(_shipped(), steps)), atol=1e-3, rtol=1e-3)


def test_the_shipped_prm_reads_generator_large() -> None:
    config = Qwen2Config.from_pretrained(Settings().prm_dir)
    large = LlamaForCausalLM.from_pretrained(EMBEDDED_DIR / "generator-large").config
    assert config.num_hidden_layers == large.num_hidden_layers + 3
    assert config.hidden_size == large.hidden_size + large.hidden_size // large.num_attention_heads
