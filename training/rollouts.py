"""Samples from a checkpoint in training, drawn through a real vLLM CPU server."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from ttc_serve.app import wiring
from ttc_serve.app.settings import Settings
from ttc_serve.models.protocols import GenerationRequest
from ttc_serve.training.lm import MAX_LEN


def sample_solutions(model_dir: Path, prompts: Sequence[str], n: int, seed: int,
                     temperature: float = 0.8, max_tokens: int = 160,
                     chunk: int = 64) -> list[list[str]]:
    """``n`` samples per prompt from a checkpoint, served by a real vLLM CPU server."""
    return asyncio.run(_sample(model_dir, prompts, n, seed, temperature, max_tokens, chunk))


async def _sample(model_dir: Path, prompts: Sequence[str], n: int, seed: int, temperature: float,
                  max_tokens: int, chunk: int) -> list[list[str]]:
    settings = wiring.offline(Settings())
    out: list[list[str]] = []
    async with wiring.checkpoint_generator(settings, model_dir, "trainee", MAX_LEN) as generator:
        for start in tqdm(range(0, len(prompts), chunk), desc="sampling", mininterval=5):
            batch = prompts[start:start + chunk]
            result = await generator.generate(GenerationRequest(
                prompts=batch, n=n, max_tokens=max_tokens, temperature=temperature,
                seed=seed + start * n))
            out.extend([c.text for c in row] for row in result.completions)
    return out
