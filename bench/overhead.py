"""Router overhead: wall time of a best-of-N request through the service ÷ the same vLLM calls made
directly (tokenize, one generate with n samples, PRM-score every sample), on the embedded models.

The service runs as its own process (``ttc-serve serve``) in front of the same two vLLM CPU servers
that the direct client calls; requests alternate between the two paths with the same seed, so both
generate the same tokens. Writes ``bench/results/overhead.json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import typer

from ttc_serve.app import wiring
from ttc_serve.app.settings import Settings
from ttc_serve.models.launcher import free_port
from ttc_serve.router.selection import split_steps

RESULTS = Path(__file__).resolve().parent / "results"
PROMPT = "question: 37+58-12+4\n"


async def direct(http: httpx.AsyncClient, gen: str, prm: str, n: int, seed: int, tag: str) -> None:
    await http.post(f"{gen}/tokenize", json={"model": "generator", "prompt": PROMPT})
    body = (await http.post(f"{gen}/v1/completions", json={
        "model": "generator", "prompt": PROMPT, "n": n, "max_tokens": 192, "temperature": 0.8,
        "seed": seed, "return_token_ids": True})).json()
    inputs = [PROMPT + "".join(f"{s}{tag}\n" for s in split_steps(c["text"])) for c in body["choices"]]
    await asyncio.gather(*(http.post(f"{prm}/pooling", json={
        "model": "prm", "input": text, "task": "token_classify"}) for text in inputs))


async def via_service(http: httpx.AsyncClient, url: str, n: int, seed: int, model: str) -> dict[str, Any]:
    response = await http.post(f"{url}/v1/completions", json={
        "model": model, "prompt": PROMPT, "seed": seed, "flops_budget": 1e12,
        "strategy": "best_of_n", "strategy_params": {"n": n}})
    response.raise_for_status()
    compute: dict[str, Any] = response.json()["compute"]
    return compute


async def measure(n: int, repeats: int) -> dict[str, Any]:
    port = free_port()
    t_direct: list[float] = []
    t_service: list[float] = []
    settings = wiring.offline(Settings(generator_url=None, prm_url=None))
    async with wiring.backend_pairs(settings) as (pair,):
        gen, prm = pair.generator.config.urls[0], pair.verifier.config.urls[0]
        env = dict(os.environ, TTC_GENERATOR_URL=gen, TTC_PRM_URL=prm, TTC_PORT=str(port))
        service = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "ttc-serve"), "serve", env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            async with httpx.AsyncClient(timeout=300) as http:
                for _ in range(600):
                    with contextlib.suppress(httpx.HTTPError):
                        if (await http.get(f"{url}/readyz")).status_code == 200:
                            break
                    await asyncio.sleep(0.5)
                for seed in range(3):  # warm-up both paths
                    await direct(http, gen, prm, n, seed, settings.prm().step_tag)
                    await via_service(http, url, n, seed, settings.model_name)
                for seed in range(100, 100 + repeats):
                    started = time.perf_counter()
                    await direct(http, gen, prm, n, seed, settings.prm().step_tag)
                    t_direct.append(time.perf_counter() - started)
                    started = time.perf_counter()
                    compute = await via_service(http, url, n, seed, settings.model_name)
                    t_service.append(time.perf_counter() - started)
                    assert compute["samples"] == n and compute["backend_calls"]["generate"] == 1
        finally:
            service.send_signal(signal.SIGINT)
            await asyncio.wait_for(service.wait(), timeout=60)
    med_direct, med_service = statistics.median(t_direct), statistics.median(t_service)
    return {"n": n, "repeats": repeats, "prompt": PROMPT,
            "direct_median_s": med_direct, "service_median_s": med_service,
            "overhead_ratio": med_service / med_direct,
            "overhead_median_ms": (med_service - med_direct) * 1000,
            "direct_s": t_direct, "service_s": t_service}


def main(n: int = 16, repeats: int = 30, out: Path = RESULTS / "overhead.json") -> None:
    result = asyncio.run(measure(n, repeats))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    typer.echo(f"best-of-{n}: service {result['service_median_s'] * 1000:.1f} ms vs direct "
               f"{result['direct_median_s'] * 1000:.1f} ms (median of {repeats}): "
               f"x{result['overhead_ratio']:.3f}, +{result['overhead_median_ms']:.1f} ms")


if __name__ == "__main__":
    typer.run(main)
