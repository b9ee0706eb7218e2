"""Every field of OpenAI's completions and chat requests: what has a meaning here shows its effect,
what has none is accepted, what cannot be served is a 400 that names the field."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import pytest

from tests.conftest import Backends, LiveService
from ttc_serve.app.protocol import ChatCompletionRequest
from ttc_serve.app.settings import Settings
from ttc_serve.router.selection import extract_answer

MODEL = Settings().model_name
HARD = "question: 912+388-475+63\n"


def complete(client: httpx.Client, **body: Any) -> dict[str, Any]:
    response = client.post("/v1/completions", json={"model": MODEL, "prompt": "question: 41+17-8\n",
                                                     "flops_budget": 4e10, **body})
    assert response.status_code == 200, response.text
    return dict(response.json())


def chat(client: httpx.Client, **body: Any) -> dict[str, Any]:
    response = client.post("/v1/chat/completions", json={
        "model": MODEL, "messages": [{"role": "user", "content": "question: 41+17-8"}],
        "flops_budget": 4e10, **body})
    assert response.status_code == 200, response.text
    return dict(response.json())


def generate_calls(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in body["compute"]["calls"] if c["backend"] == "generator"]


@pytest.mark.parametrize("strategy", ["majority", "beam_search"])
def test_stop_reaches_every_sample_and_cuts_the_text(client: httpx.Client, strategy: str) -> None:
    body = complete(client, stop=["="], strategy=strategy, return_trace=True,
                    strategy_params={"n": 4} if strategy == "majority" else {"n": 4, "beam_width": 2})
    for choice in body["choices"]:
        assert "=" not in choice["text"] and choice["finish_reason"] == "stop"
    assert all("=" in call["sampling"]["stop"] for call in generate_calls(body))


def test_n_gives_distinct_answers_in_rank_order(client: httpx.Client) -> None:
    body = complete(client, prompt=HARD, n=3, strategy="majority", temperature=1.2, seed=7,
                    strategy_params={"n": 24}, return_trace=True)
    answers = [extract_answer(c["text"]) for c in body["choices"]]
    assert [c["index"] for c in body["choices"]] == list(range(len(answers)))
    assert 2 <= len(answers) <= 3 and len(set(answers)) == len(answers)
    votes = Counter(t["answer"] for t in body["compute"]["trace"] if t["answer"] is not None)
    assert [votes[a] for a in answers] == sorted((votes[a] for a in answers), reverse=True)
    assert votes[answers[0]] == max(votes.values())


def test_completion_logprobs_cover_the_chosen_text(client: httpx.Client) -> None:
    for strategy in ("best_of_n", "beam_search"):
        choice = complete(client, logprobs=2, strategy=strategy)["choices"][0]
        logprobs = choice["logprobs"]
        assert "".join(logprobs["tokens"]) == choice["text"]
        assert all(lp <= 0 for lp in logprobs["token_logprobs"])
        assert all(1 <= len(top) <= 3 for top in logprobs["top_logprobs"])
        assert logprobs["text_offset"][0] == 0


def test_chat_logprobs_and_top_logprobs(client: httpx.Client) -> None:
    choice = chat(client, logprobs=True, top_logprobs=2, strategy="majority")["choices"][0]
    content = choice["logprobs"]["content"]
    assert "".join(t["token"] for t in content) == choice["message"]["content"]
    assert all(len(t["top_logprobs"]) == 2 and t["bytes"] == list(t["token"].encode()) for t in content)
    assert chat(client)["choices"][0]["logprobs"] is None


def test_echo_prefixes_the_prompt(client: httpx.Client) -> None:
    text = complete(client, echo=True)["choices"][0]["text"]
    assert text.startswith("question: 41+17-8\n") and len(text) > len("question: 41+17-8\n")


def test_sampling_options_reach_vllm(client: httpx.Client, backends: Backends) -> None:
    probe = {"model": "generator", "prompt": "9", "add_special_tokens": False}
    nine = httpx.post(f"{backends.generator.base_url}/tokenize", json=probe).json()["tokens"]
    body = complete(client, strategy="majority", strategy_params={"n": 2}, return_trace=True,
                    frequency_penalty=0.5, presence_penalty=0.25, logit_bias={str(nine[-1]): 100},
                    seed=11, temperature=0.5, top_p=0.9, max_tokens=12)
    [call] = generate_calls(body)
    assert call["sampling"] | {"n": 2} == {
        "n": 2, "max_tokens": 12, "temperature": 0.5, "top_p": 0.9, "seed": 11, "frequency_penalty": 0.5,
        "presence_penalty": 0.25, "logit_bias": {str(nine[-1]): 100.0}}
    assert set(body["choices"][0]["text"]) == {"9"}  # a +100 bias: nothing but nines
    assert body["compute"]["sampling"]["max_tokens"] == 12


def test_chat_content_parts_roles_and_names(client: httpx.Client) -> None:
    messages = [{"role": "developer", "content": "Answer with the result."},
                {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
                {"role": "user", "name": "ada", "content": [{"type": "text", "text": "question: "},
                                                            {"type": "text", "text": "41+17-8"}]}]
    rich = client.post("/v1/chat/completions", json={
        "model": MODEL, "flops_budget": 4e10, "max_completion_tokens": 40, "messages": messages})
    assert rich.status_code == 200, rich.text
    body = rich.json()
    assert extract_answer(body["choices"][0]["message"]["content"]) == "50"
    assert body["compute"]["sampling"]["max_tokens"] == 40
    # as a chat template reads them (the embedded one shows only the user's turns)
    assert ChatCompletionRequest(model=MODEL, messages=messages).template_messages() == [
        {"role": "system", "content": "Answer with the result."},
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "question: 41+17-8", "name": "ada"}]


NO_EFFECT: dict[str, Any] = {
    "user": "u-1", "metadata": {"team": "a"}, "store": False, "service_tier": "auto",
    "parallel_tool_calls": False, "response_format": {"type": "text"}, "tool_choice": "none",
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
    "stream_options": None, "verbosity": "low", "prompt_cache_key": "k", "safety_identifier": "s",
    "prediction": {"type": "content", "content": "x"}, "modalities": ["text"], "n": 1}


def test_fields_without_effect_are_accepted(client: httpx.Client) -> None:
    assert extract_answer(chat(client, **NO_EFFECT)["choices"][0]["message"]["content"]) == "50"


CANNOT: list[tuple[str, dict[str, Any], str]] = [
    ("chat", {"tools": NO_EFFECT["tools"], "tool_choice": "auto"}, "tool_choice"),
    ("chat", {"response_format": {"type": "json_object"}}, "response_format"),
    ("chat", {"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
    ("chat", {"modalities": ["text", "audio"]}, "modalities"),
    ("chat", {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]},
     "messages.0.content.1.type"),
    ("chat", {"messages": [{"role": "tool", "content": "42", "tool_call_id": "c1"}]}, "messages.0.role"),
    ("chat", {"temprature": 0.5}, "temprature"),
    ("completions", {"suffix": " and so on"}, "suffix"),
    ("completions", {"best_of": 4}, "best_of"),
]


@pytest.mark.parametrize(("endpoint", "change", "param"), CANNOT)
def test_what_cannot_be_served_is_a_400_naming_the_field(client: httpx.Client, endpoint: str,
                                                        change: dict[str, Any], param: str) -> None:
    base: dict[str, Any] = ({"messages": [{"role": "user", "content": "question: 1+1"}]} if endpoint == "chat"
                            else {"prompt": "question: 1+1\n"})
    response = client.post(f"/v1/{'chat/completions' if endpoint == 'chat' else 'completions'}",
                           json={"model": MODEL, **base, **change})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["message"], error


def test_reasoning_effort_sets_the_budget(client: httpx.Client, service: LiveService) -> None:
    from ttc_serve.app.wiring import reasoning_effort_budgets

    table = reasoning_effort_budgets(service.settings)
    assert table["low"] < table["medium"] < table["high"]
    for effort in ("low", "high"):
        compute = complete(client, flops_budget=None, reasoning_effort=effort)["compute"]
        assert compute["flops_budget"] == table[effort] and compute["budget_source"] == "reasoning_effort"
        assert compute["flops_used"] <= compute["flops_budget"]
    compute = complete(client, reasoning_effort="high")["compute"]  # flops_budget wins
    assert compute["flops_budget"] == 4e10 and compute["budget_source"] == "request"
    response = client.post("/v1/responses", json={"model": MODEL, "input": "question: 3+4",
                                                  "reasoning": {"effort": "low"}})
    assert response.json()["compute"]["flops_budget"] == table["low"]


def test_request_id_is_followed_into_the_vllm_servers(client: httpx.Client, backends: Backends) -> None:
    response = client.post("/v1/completions", headers={"X-Request-Id": "trace-me-42"}, json={
        "model": MODEL, "prompt": "question: 2+2\n", "flops_budget": 4e10, "strategy": "best_of_n"})
    assert response.status_code == 200 and response.headers["x-request-id"] == "trace-me-42"
    assert "trace-me-42-" in backends.generator.log_tail(200_000)  # vLLM's "Received request" lines
    assert "trace-me-42-" in backends.prm.log_tail(200_000)
    generated = client.get("/v1/models").headers["x-request-id"]
    assert len(generated) == 32
