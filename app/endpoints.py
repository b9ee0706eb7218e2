"""Each endpoint's flow: refuse what cannot be served, turn the request into an ``Ask``, then answer
it whole or as a stream."""

from __future__ import annotations

from fastapi import Request
from sse_starlette import EventSourceResponse

from ttc_serve.app.openai_format import (
    ChatChunks,
    CompletionChunks,
    ask_of,
    chat_response,
    completion_response,
)
from ttc_serve.app.protocol import (
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionRequest,
    CompletionResponse,
)
from ttc_serve.app.responses_api import ResponseEvents, ResponseObject, ResponsesRequest
from ttc_serve.app.serving import chat_prompt, refuse_unsupported, run
from ttc_serve.app.state import ServiceState
from ttc_serve.app.streaming import ChunkStream, stream


async def completion(state: ServiceState, request: Request,
                     body: CompletionRequest) -> CompletionResponse | EventSourceResponse:
    refuse_unsupported(body.unsupported())
    ask = ask_of(body, body.prompt_text())
    if body.stream:
        return await stream(state, ask, ChunkStream(CompletionChunks(body, ask), body.include_usage()))
    return completion_response(body, ask, await run(state, request, ask))


async def chat(state: ServiceState, request: Request,
               body: ChatCompletionRequest) -> ChatCompletionResponse | EventSourceResponse:
    refuse_unsupported(body.unsupported())
    prompt, question = await chat_prompt(state, body.template_messages())
    ask = ask_of(body, prompt, question)
    if body.stream:
        return await stream(state, ask, ChunkStream(ChatChunks(body, ask), body.include_usage()))
    return chat_response(body, ask, await run(state, request, ask))


async def responses(state: ServiceState, request: Request,
                    body: ResponsesRequest) -> dict[str, object] | EventSourceResponse:
    refuse_unsupported(body.unsupported())
    prompt, question = await chat_prompt(state, body.messages())
    ask = body.ask(prompt, question)
    response = ResponseObject(body, ask)
    if body.stream:
        return await stream(state, ask, ResponseEvents(response))
    return response.complete(await run(state, request, ask))
