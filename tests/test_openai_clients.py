"""Contract tests: the clients people point at an OpenAI-compatible server, unchanged, against the
real service on the embedded models. Each answers, within its budget."""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import pytest

from tests.conftest import LiveService
from ttc_serve.app.settings import Settings
from ttc_serve.router.selection import extract_answer

MODEL = Settings().model_name
BUDGET = 4e10
QUESTION = "question: 12+5"
EXTRA = {"flops_budget": BUDGET}


def within_budget(compute: dict[str, Any]) -> None:
    assert 0 < compute["flops_used"] <= compute["flops_budget"] == BUDGET


@pytest.fixture(scope="module")
def sync_client(service: LiveService) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{service.url}/v1", api_key="unused", max_retries=0)


def test_openai_completions_and_chat(sync_client: openai.OpenAI) -> None:
    completion = sync_client.completions.create(model=MODEL, prompt=QUESTION + "\n", extra_body=EXTRA)
    assert extract_answer(completion.choices[0].text) == "17"
    within_budget(completion.model_extra["compute"])
    chat = sync_client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": QUESTION}], extra_body=EXTRA)
    assert extract_answer(chat.choices[0].message.content or "") == "17"
    within_budget(chat.model_extra["compute"])


def test_openai_streaming(sync_client: openai.OpenAI) -> None:
    chunks = list(sync_client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": QUESTION}], stream=True,
        stream_options={"include_usage": True}, extra_body=EXTRA))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert extract_answer(text) == "17"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    within_budget(chunks[-1].model_extra["compute"])
    pieces = list(sync_client.completions.create(model=MODEL, prompt=QUESTION + "\n", stream=True,
                                                 extra_body=EXTRA))
    assert extract_answer("".join(c.choices[0].text for c in pieces if c.choices)) == "17"
    within_budget(pieces[-1].model_extra["compute"])


def test_openai_async(service: LiveService) -> None:
    async def ask() -> tuple[str, str]:
        client = openai.AsyncOpenAI(base_url=f"{service.url}/v1", api_key="unused", max_retries=0)
        plain = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": QUESTION}], extra_body=EXTRA)
        streamed = ""
        async for chunk in await client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": QUESTION}], stream=True,
                extra_body=EXTRA):
            streamed += "".join(c.delta.content or "" for c in chunk.choices)
        await client.close()
        return plain.choices[0].message.content or "", streamed

    plain, streamed = asyncio.run(ask())
    assert extract_answer(plain) == extract_answer(streamed) == "17"


def test_openai_responses(sync_client: openai.OpenAI) -> None:
    response = sync_client.responses.create(model=MODEL, input=QUESTION, extra_body=EXTRA)
    assert response.status == "completed" and extract_answer(response.output_text) == "17"
    assert response.usage is not None and response.usage.output_tokens > 0
    within_budget(response.model_extra["compute"])
    events = list(sync_client.responses.create(model=MODEL, input=QUESTION, stream=True, extra_body=EXTRA))
    types = [e.type for e in events]
    assert types[0] == "response.created" and types[-1] == "response.completed"
    assert "response.in_progress" in types and "response.output_text.delta" in types
    done = events[-1].response  # type: ignore[union-attr]
    assert extract_answer(done.output_text) == "17"
    within_budget(done.model_extra["compute"])


def test_langchain_openai(service: LiveService) -> None:
    from langchain_openai import ChatOpenAI, OpenAI

    base = f"{service.url}/v1"
    chat = ChatOpenAI(model=MODEL, base_url=base, api_key="unused", max_retries=0, extra_body=EXTRA)
    assert extract_answer(str(chat.invoke(QUESTION).content)) == "17"
    assert extract_answer("".join(str(c.content) for c in chat.stream(QUESTION))) == "17"
    answers = [extract_answer(str(m.content)) for m in chat.batch([QUESTION, "question: 5+6"])]
    assert answers == ["17", "11"]
    # the completions model sends frequency_penalty, presence_penalty and logprobs by default
    llm = OpenAI(model=MODEL, base_url=base, api_key="unused", max_retries=0, extra_body=EXTRA)
    assert extract_answer(llm.invoke(QUESTION + "\n")) == "17"


def test_litellm(service: LiveService, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network here
    import litellm

    common: dict[str, Any] = {"model": f"openai/{MODEL}", "api_base": f"{service.url}/v1",
                              "api_key": "unused", "extra_body": EXTRA, "num_retries": 0}
    messages = [{"role": "user", "content": QUESTION}]
    reply = litellm.completion(messages=messages, **common)
    assert extract_answer(reply.choices[0].message.content) == "17"
    text = litellm.text_completion(prompt=QUESTION + "\n", **common)
    assert extract_answer(text.choices[0].text) == "17"
    streamed = "".join(c.choices[0].delta.content or "" for c in
                       litellm.completion(messages=messages, stream=True, **common) if c.choices)
    assert extract_answer(streamed) == "17"
