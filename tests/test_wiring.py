"""One wiring for every entry point: a deployment setting reaches the service and an offline run
alike, so that calibrate measures what serve runs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from tests.conftest import Backends, LiveService, service_settings
from ttc_serve.app import wiring
from ttc_serve.router.calibrate.dataset import embedded_split
from ttc_serve.router.calibrate.grid import GridConfig, run_grid
from ttc_serve.router.calibrate.records import RecordStore

MAX_TOKENS = 6  # far below the default: a sample of the embedded generator runs ~30 tokens


def test_a_sampling_setting_reaches_the_service_and_calibration(backends: Backends, tmp_path: Path) -> None:
    settings = service_settings(backends, default_max_tokens=MAX_TOKENS, default_temperature=1.3)
    assert wiring.sampling_defaults(settings).max_tokens == MAX_TOKENS

    # the service: a request that sets no max_tokens gets the deployment's
    with LiveService(settings) as live:
        body = httpx.post(f"{live.url}/v1/completions", timeout=120, json={
            "model": settings.model_name, "prompt": "question: 12+5+7\n", "flops_budget": 2e9,
            "strategy": "majority", "return_trace": True}).json()
    served = [t for call in body["compute"]["calls"] for row in call.get("completion_tokens", [])
              for t in row]
    assert served and max(served) <= MAX_TOKENS

    # calibration: the same settings, through the engines its command builds
    offline = wiring.offline(settings)
    store = RecordStore(tmp_path / "records.jsonl")
    question = embedded_split("dev", per_level=1)[2]

    async def run() -> None:
        async with wiring.backend_pairs(offline) as pairs:
            engines = wiring.engines(offline, pairs)
            assert engines[0].sampling == wiring.sampling_defaults(settings)
            await run_grid(engines, [question], [GridConfig("majority", "majority")], [2e9], store)

    asyncio.run(run())
    [row] = store.phase("grid")
    assert 0 < row["generated_tokens"] <= MAX_TOKENS * row["samples"]
