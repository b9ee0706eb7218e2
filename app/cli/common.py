"""What the offline commands share: parsing budget lists, stopping on SIGTERM, resumable stores."""

from __future__ import annotations

import signal
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import typer

from ttc_serve.app.settings import Settings
from ttc_serve.app.wiring import BackendPair
from ttc_serve.models.chat import ChatTemplate
from ttc_serve.router.calibrate.dataset import Question
from ttc_serve.router.calibrate.records import RecordStore, run_context


def floats(text: str, param: str) -> tuple[float, ...]:
    try:
        values = tuple(sorted(float(v) for v in text.split(",") if v.strip()))
    except ValueError as exc:
        raise typer.BadParameter(f"comma-separated numbers, e.g. 1e9,2e9 ({exc})", param_hint=param) from None
    if not values or min(values) <= 0:
        raise typer.BadParameter("give at least one budget, all positive", param_hint=param)
    return values


def stop_on_sigterm() -> None:
    """Offline commands start vLLM servers of their own: on SIGTERM unwind like Ctrl-C, so that the
    ``finally`` blocks stop them (process group and all) instead of leaving them to PDEATHSIG."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


async def prompts_as_served(settings: Settings, pair: BackendPair, items: list[Question],
                            raw: bool) -> list[Question]:
    """The questions as a chat client's request would reach the generator: each prompt as a user
    message through the generator's chat template (BOS as its tokenizer wants it); as they are when
    ``raw`` or when the generator has no chat template."""
    template = None if raw else ChatTemplate.from_model_dir(settings.generator_dir)
    if template is None:
        return items
    strip = await pair.generator.adds_bos()
    return [replace(q, prompt=template.render([{"role": "user", "content": q.prompt}], strip_bos=strip))
            for q in items]


def bound_store(out_dir: Path, models: dict[str, str], items: Iterable[Any], policy_json: str | None = None,
                name: str = "records.jsonl", **extra: str) -> RecordStore:
    """The run's record store, bound to what its records depend on (see ``RecordStore``)."""
    store = RecordStore(out_dir / name, run_context(models, items, policy_json, **extra))
    if store.stale is not None:
        typer.echo(f"records of other models or questions moved to {store.stale}")
    return store
