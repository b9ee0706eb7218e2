"""Generator and Verifier over vLLM's OpenAI-compatible HTTP servers (GPU in production, CPU embedded).

A backend is a role (generator or PRM) served by one or more vLLM replicas, each with its own
``httpx.AsyncClient``, explicit timeouts and connection limits (``models/replicas.py``: which replica a
call goes to). A batched generate
sends one request per prompt, all at once: vLLM batches them in its scheduler, and each response
then reports its own prefix-cache hits (a multi-prompt request reports only the last prompt's).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from ttc_serve.models import request_context
from ttc_serve.models.prm_format import PrmFormat
from ttc_serve.models.protocols import (
    Completion,
    GenerationRequest,
    GenerationResult,
    TokenLogprob,
    Usage,
    VerifierResult,
)
from ttc_serve.models.replicas import Replica, ReplicaLost, ReplicaSet, Routing


class BackendError(RuntimeError):
    """A backend call failed. ``unavailable`` separates "down/unreachable" from "refused input"."""

    def __init__(self, backend: str, message: str, *, unavailable: bool, status: int | None = None):
        super().__init__(f"{backend}: {message}")
        self.backend = backend
        self.message = message
        self.unavailable = unavailable
        self.status = status


# Called after every backend HTTP call: (backend, replica, endpoint, seconds, error or None).
CallObserver = Callable[[str, str, str, float, str | None], None]


@dataclass(frozen=True)
class HttpBackendConfig:
    urls: tuple[str, ...]  # the role's replicas (one vLLM server each)
    model: str  # the served model name
    max_model_len: int
    api_key: str | None = None
    timeout_s: float = 120.0
    connect_timeout_s: float = 5.0
    max_connections: int = 256  # per replica
    # Idle pooled connections are dropped well before the server's keep-alive timeout (uvicorn and
    # vLLM default to 5 s): reusing one the server is closing at that moment fails with ReadError.
    keepalive_expiry_s: float = 2.0
    routing: Routing = "affinity"


class _VllmHttpBackend:
    kind = "backend"

    def __init__(self, config: HttpBackendConfig, observer: CallObserver | None = None):
        self.config = config
        self.name = config.model
        self.max_model_len = config.max_model_len
        self._observer = observer
        self._adds_bos: bool | None = None
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        timeout = httpx.Timeout(config.timeout_s, connect=config.connect_timeout_s)
        self.replicas = ReplicaSet(
            [Replica(url, headers=headers, timeout=timeout, max_connections=config.max_connections,
                     keepalive_expiry_s=config.keepalive_expiry_s) for url in config.urls],
            config.routing)

    async def aclose(self) -> None:
        await self.replicas.aclose()

    @property
    def available(self) -> bool:
        """Whether any replica is up (the health monitor's verdict, ``app/health.py``)."""
        return self.replicas.available

    async def _post(self, endpoint: str, payload: dict[str, Any]) -> dict[str, Any]:
        tag = request_context.CURRENT.get()
        headers = {"X-Request-Id": tag.backend_call_id()} if tag is not None else None
        order = self.replicas.order(None if tag is None else tag.request_id)
        if not order:
            self._observe(self.replicas.replicas[0], endpoint, time.perf_counter(), "down")
            raise BackendError(self.kind, "down (health checks failing)", unavailable=True)
        for attempt, replica in enumerate(order, start=1):
            started = time.perf_counter()
            try:
                response = await replica.post(endpoint, payload, headers)
            except ReplicaLost:
                # marked down by the health monitor while this call waited on it
                self._observe(replica, endpoint, started, "down")
                if attempt == len(order):
                    raise BackendError(self.kind, "went down during the call", unavailable=True) from None
                continue
            except httpx.TimeoutException as exc:
                if not isinstance(exc, httpx.ConnectTimeout):  # a slow replica is not a gone one
                    self._observe(replica, endpoint, started, "timeout")
                    raise BackendError(self.kind, f"timed out calling {endpoint} on {replica.url}",
                                       unavailable=True) from exc
                failure: httpx.TransportError = exc
            except httpx.TransportError as exc:
                failure = exc
            else:
                break
            # The connection failed or dropped without an answer: the replica is gone or going,
            # and whatever it did for this call is lost with it (never charged: only answered
            # calls are). The call goes to the next replica, if there is one.
            self._observe(replica, endpoint, started, "unreachable")
            if attempt == len(order):
                raise BackendError(self.kind, f"lost {replica.url}: {failure!r}",
                                   unavailable=True) from failure
        if response.status_code >= 400:
            self._observe(replica, endpoint, started, str(response.status_code))
            raise BackendError(self.kind, _error_message(response),
                               unavailable=response.status_code >= 500, status=response.status_code)
        self._observe(replica, endpoint, started, None)
        body: dict[str, Any] = response.json()
        return body

    def _observe(self, replica: Replica, endpoint: str, started: float, error: str | None) -> None:
        if self._observer is not None:
            self._observer(self.kind, replica.label, endpoint, time.perf_counter() - started, error)

    async def ready(self) -> bool:
        """Whether any replica answers its health check now."""
        answers = await asyncio.gather(*(r.ready() for r in self.replicas.replicas))
        return any(answers)

    async def count_tokens(self, prompt: str) -> int:
        body = await self._post("/tokenize", {"model": self.name, "prompt": prompt})
        return int(body["count"])

    async def adds_bos(self) -> bool:
        """Whether the server's tokenizer puts a token of its own (BOS) before every prompt: asked
        of the server once, by tokenizing a probe with and without special tokens."""
        if self._adds_bos is None:
            probe = {"model": self.name, "prompt": "a"}
            bare_probe = {**probe, "add_special_tokens": False}
            plain, bare = await asyncio.gather(self._post("/tokenize", probe),
                                               self._post("/tokenize", bare_probe))
            self._adds_bos = int(plain["count"]) > int(bare["count"])
        return self._adds_bos


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:300]}"
    error = body.get("error", body)
    if isinstance(error, dict):
        return str(error.get("message", error))
    return str(error)


class VllmGenerator(_VllmHttpBackend):
    kind = "generator"

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        calls: list[Awaitable[dict[str, Any]]] = []
        for i, prompt in enumerate(request.prompts):
            payload: dict[str, Any] = {
                "model": self.name, "prompt": prompt, "n": request.n,
                "max_tokens": request.max_tokens, "temperature": request.temperature,
                "top_p": request.top_p, "return_token_ids": True, **request.options(),
            }
            if request.stop:
                payload["stop"] = list(request.stop)
                payload["include_stop_str_in_output"] = True
            if request.seed is not None:
                payload["seed"] = request.seed + i * request.n  # vLLM seeds sample j with seed + j
            calls.append(self._post("/v1/completions", payload))
        bodies = await _gather_or_cancel(calls)
        completions: list[list[Completion]] = []
        usage = Usage()
        prompt_tokens: list[int] = []
        cached_tokens: list[int] = []
        for body in bodies:
            choices = sorted(body["choices"], key=lambda c: c["index"])
            completions.append([
                Completion(text=c["text"], finish_reason=c["finish_reason"] or "stop",
                           tokens=len(c.get("token_ids") or []),
                           logprobs=_logprobs(c.get("logprobs"), c["text"]))
                for c in choices])
            raw = body["usage"]
            cached = int((raw.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
            usage = usage + Usage(int(raw["prompt_tokens"]), int(raw["completion_tokens"]), cached)
            prompt_tokens.append(int(raw["prompt_tokens"]))
            cached_tokens.append(cached)
        return GenerationResult(completions=completions, usage=usage, prompt_tokens=prompt_tokens,
                                cached_tokens=cached_tokens)


def _logprobs(raw: dict[str, Any] | None, text: str) -> tuple[TokenLogprob, ...] | None:
    """vLLM's completions logprobs (parallel lists: tokens, token_logprobs, top_logprobs), for the
    tokens of ``text`` only: vLLM also lists the end-of-sequence token, which the text leaves out."""
    if not raw:
        return None
    tops = raw.get("top_logprobs") or [None] * len(raw["tokens"])
    kept, offset = [], 0
    for token, logprob, top in zip(raw["tokens"], raw["token_logprobs"], tops, strict=True):
        if offset >= len(text):
            break
        value = float(logprob) if logprob is not None else float("-inf")
        kept.append(TokenLogprob(token=token, logprob=value,
                                 top=tuple((t, float(lp)) for t, lp in (top or {}).items())))
        offset += len(token)
    return tuple(kept)


class VllmVerifier(_VllmHttpBackend):
    """A PRM served by vLLM's pooling runner: ``/pooling`` returns ``[p_bad, p_good]`` per step tag."""

    kind = "verifier"

    def __init__(self, config: HttpBackendConfig, prm: PrmFormat,
                 observer: CallObserver | None = None):
        super().__init__(config, observer)
        self.prm = prm
        # until shown otherwise (``same_tokenizer``), PRM inputs are counted by the PRM's tokenizer
        self.shares_generator_tokenizer = False

    async def count_inputs(self, prompts: Sequence[str], solutions: Sequence[Sequence[str]]) -> list[int]:
        bodies = await _gather_or_cancel([
            self._post("/tokenize", {"model": self.name, "prompt": self.format(p, s)})
            for p, s in zip(prompts, solutions, strict=True)])
        return [int(body["count"]) for body in bodies]

    def format(self, prompt: str, steps: Sequence[str]) -> str:
        return self.prm.text(prompt, steps)

    async def score(self, prompts: Sequence[str], solutions: Sequence[Sequence[str]]) -> VerifierResult:
        """One ``/pooling`` request per input, all at once (vLLM batches them): each response's
        usage then gives that input's exact token count for the FLOPs account."""
        inputs = [self.format(p, s) for p, s in zip(prompts, solutions, strict=True)]
        bodies = await _gather_or_cancel([
            self._post("/pooling", {"model": self.name, "input": text, "task": "token_classify"})
            for text in inputs])
        scores: list[list[float]] = []
        tokens: list[int] = []
        for steps, body in zip(solutions, bodies, strict=True):
            row = [self.prm.score(pair) for pair in body["data"][0]["data"]]
            if len(row) != len(steps):
                raise BackendError(self.kind, f"PRM returned {len(row)} scores for {len(steps)} "
                                   "steps: check the step tag and its id", unavailable=False)
            scores.append(row)
            tokens.append(int(body["usage"]["prompt_tokens"]))
        return VerifierResult(step_scores=scores, usage=Usage(prompt_tokens=sum(tokens)),
                              input_tokens=tokens)


async def same_tokenizer(generator: VllmGenerator, verifier: VllmVerifier) -> bool:
    """Whether both servers turn a probe text (digits, words, spaces, newlines, the step tag,
    non-ASCII) into the same token ids; False when either cannot be asked."""
    probe = f"question: 12+5 is what?\n12+5=17{verifier.prm.step_tag}answer: \\boxed{{17}} é\n"
    try:
        ours, theirs = await asyncio.gather(
            generator._post("/tokenize", {"model": generator.name, "prompt": probe}),
            verifier._post("/tokenize", {"model": verifier.name, "prompt": probe}))
    except BackendError:
        return False
    return bool(ours.get("tokens") == theirs.get("tokens"))


async def served_max_model_len(backend: VllmGenerator | VllmVerifier) -> int | None:
    """The context length the servers were started with (``/v1/models``): the least of the
    replicas that say, None if none can."""
    lengths = await asyncio.gather(*(_served_max_model_len(r, backend.name)
                                     for r in backend.replicas.replicas))
    known = [n for n in lengths if n is not None]
    return min(known) if known else None


async def _served_max_model_len(replica: Replica, name: str) -> int | None:
    try:
        response = await replica.client.get("/v1/models", timeout=5.0)
        models = response.json().get("data", []) if response.status_code == 200 else []
    except (httpx.HTTPError, ValueError):
        return None
    for model in models:
        if model.get("id") == name and model.get("max_model_len"):
            return int(model["max_model_len"])
    return None


async def _gather_or_cancel(calls: Sequence[Awaitable[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Run all calls; if one fails or we are cancelled, cancel the rest (no request left running)."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
