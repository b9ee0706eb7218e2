"""The router image, built and run as a user would: ``podman build`` of the Dockerfile (BASE from
``deploy/image/make-base.sh`` where no registry is reachable), then the container started on the
host network in front of the embedded vLLM CPU servers, its healthcheck run, and the README's
request answered by it. Checks that it runs as the non-root user and carries the shipped policy.
Writes ``bench/results/image.json``. ``make image``; needs podman (and, for the local base, root
and debootstrap). About 3 minutes once the base exists."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from bench.load import ready
from ttc_serve.app.settings import Settings
from ttc_serve.app.wiring import embedded_server_specs
from ttc_serve.models.launcher import free_port, running

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "image.json"
IMAGE = "localhost/ttc-serve:dev"
BASE = os.environ.get("TTC_IMAGE_BASE", "localhost/ttc-base:bookworm")
# podman as it runs on machines like the project's (../shared/notes/containers.md)
ENV = dict(os.environ, CONTAINERS_CONF=str(ROOT / "deploy" / "image" / "containers.conf"))
PODMAN = ["podman", "--runtime", "runc"]
README_REQUEST = {"model": Settings().model_name, "prompt": "question: 37+5-12\n", "flops_budget": 2e10}


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PODMAN, *args], env=ENV, capture_output=True, text=True, check=check)


def ensure_base() -> float:
    """The local base image, made from Debian packages if it is not there yet; seconds spent."""
    if podman("image", "exists", BASE, check=False).returncode == 0:
        return 0.0
    started = time.monotonic()
    subprocess.run(["bash", str(ROOT / "deploy" / "image" / "make-base.sh"), BASE], env=ENV, check=True)
    return time.monotonic() - started


def build() -> float:
    started = time.monotonic()
    # docker format: the OCI format has no HEALTHCHECK and podman would drop it
    result = subprocess.run([*PODMAN, "build", "--format", "docker", "--network", "host",
                             "--build-arg", f"BASE={BASE}",
                             "-t", IMAGE, str(ROOT)], env=ENV, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit("podman build failed")
    return time.monotonic() - started


def run_container(generator_url: str, prm_url: str) -> dict[str, Any]:
    port = free_port()
    name = f"ttc-serve-{port}"
    # The image's defaults point at mounted model files (/models/...); here the embedded models'
    # configs and tokenizers, which the installed package carries.
    embedded = podman("run", "--rm", "--network", "host", IMAGE, "python", "-c",
                      "from ttc_serve.app.settings import EMBEDDED_DIR; print(EMBEDDED_DIR)").stdout.strip()
    podman("run", "-d", "--rm", "--name", name, "--network", "host",
           "-e", f"TTC_PORT={port}", "-e", f"TTC_GENERATOR_URL={generator_url}",
           "-e", f"TTC_PRM_URL={prm_url}", "-e", f"TTC_GENERATOR_DIR={embedded}/generator-small",
           "-e", f"TTC_PRM_DIR={embedded}/prm", IMAGE)
    url = f"http://127.0.0.1:{port}"
    try:
        started = time.monotonic()
        while not ready(url) and time.monotonic() - started < 120:
            time.sleep(0.5)
        ready_s = time.monotonic() - started
        health = podman("healthcheck", "run", name, check=False)
        user = podman("exec", name, "id", "-u").stdout.strip()
        reply = httpx.post(f"{url}/v1/completions", json=README_REQUEST, timeout=120)
        body = reply.json()
        policy = podman("exec", name, "python", "-c",
                        "from ttc_serve.app.settings import EMBEDDED_POLICY; print(EMBEDDED_POLICY.exists())")
        return {"ready_s": round(ready_s, 1), "healthcheck_exit": health.returncode, "uid": user,
                "policy_in_image": policy.stdout.strip() == "True",
                "readme_request": {"status": reply.status_code,
                                   "text": body["choices"][0]["text"] if reply.status_code == 200 else body,
                                   "flops_used": body.get("compute", {}).get("flops_used"),
                                   "flops_budget": body.get("compute", {}).get("flops_budget")}}
    finally:
        podman("stop", "-t", "35", name, check=False)


def main() -> None:
    base_s = ensure_base()
    build_s = build()
    size = podman("image", "inspect", IMAGE, "--format", "{{.Size}}").stdout.strip()
    with running(*embedded_server_specs(Settings()), timeout_s=600) as (generator, prm):
        run = run_container(generator.base_url, prm.base_url)
    results = {"base": BASE, "base_made_s": round(base_s, 1), "build_s": round(build_s, 1),
               "image_bytes": int(size), **run}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
