"""Errors the router raises for a request it cannot serve as asked (the app maps them to HTTP)."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ValidationError


class RequestError(Exception):
    """The request is at fault: a 4xx with ``param`` naming the offending field."""

    status = 400
    code = "invalid_request"

    def __init__(self, message: str, param: str | None):
        super().__init__(message)
        self.message = message
        self.param = param


class UnknownStrategy(RequestError):
    code = "unknown_strategy"

    def __init__(self, name: str, known: Sequence[str]):
        super().__init__(f"unknown strategy {name!r}; choose one of: {', '.join(known)}", "strategy")


class InvalidParams(RequestError):
    code = "invalid_strategy_params"

    def __init__(self, strategy: str, error: ValidationError):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'strategy_params'}: {e['msg']}"
            for e in error.errors())
        super().__init__(f"invalid strategy_params for {strategy}: {problems}", "strategy_params")


class UnsupportedParams(RequestError):
    """Valid ``strategy_params`` that this deployment's models cannot run."""

    code = "invalid_strategy_params"

    def __init__(self, strategy: str, field: str, why: str):
        super().__init__(f"strategy_params.{field} of {strategy}: {why}", f"strategy_params.{field}")


class BudgetTooSmall(RequestError):
    code = "budget_too_small"

    def __init__(self, budget: float, minimum: float, strategy: str):
        super().__init__(f"flops_budget {budget:.4g} cannot pay for one {strategy} sample at this "
                         f"prompt and max_tokens; it needs at least {minimum:.4g} FLOPs",
                         "flops_budget")
        self.minimum = minimum


class PromptTooLong(RequestError):
    code = "context_length_exceeded"

    def __init__(self, prompt_tokens: int, limit: int, backend: str = "the generator"):
        super().__init__(f"the prompt has {prompt_tokens} tokens for {backend}, whose context holds "
                         f"{limit}: it leaves no room to answer", "prompt")


class PromptTooLarge(RequestError):
    code = "context_length_exceeded"

    def __init__(self, chars: int, limit: int, context: int):
        super().__init__(f"the prompt has {chars} characters; no prompt over {limit} fits the "
                         f"generator's context of {context} tokens", "prompt")


class DeadlineExceeded(Exception):
    def __init__(self, deadline_s: float):
        super().__init__(f"the request did not finish within {deadline_s:g}s")
        self.deadline_s = deadline_s
