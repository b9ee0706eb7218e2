"""The wheel as a user installs it: built from the repository, installed into a fresh virtual
environment, it serves ``auto`` with the shipped policy, under the one name ``ttc_serve``."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Backends
from ttc_serve.app.settings import EMBEDDED_POLICY, Settings
from ttc_serve.models.launcher import free_port
from ttc_serve.router.policy import CalibratedPolicy

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(out), str(ROOT)], check=True, capture_output=True)
    [built] = out.glob("ttc_serve-*.whl")
    return built


@pytest.fixture(scope="module")
def fresh_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv with the wheel installed. Its dependencies (the cpu extra: vLLM, torch, ...) are the
    test run's own, reached through a .pth file: downloading them again would take minutes and test
    pip, not the wheel. Nothing of the checkout is on its path."""
    venv = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          check=True, capture_output=True, text=True).stdout.strip()
    (Path(site) / "test-run-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                    str(wheel)], check=True, capture_output=True)
    return venv


def test_the_wheel_installs_one_package_with_the_policy_and_the_checkpoints(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"ttc_serve", wheel.name.split("-py3")[0] + ".dist-info"}
    assert "ttc_serve/models/embedded/policy.json" in names
    assert "ttc_serve/models/embedded/checkpoints/generator-small/model.safetensors" in names
    assert not any(n.startswith("ttc_serve/training/") and n.endswith(".pyc") for n in names)


@pytest.fixture()
def installed_service(fresh_venv: Path, backends: Backends, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    port = free_port()
    log = tmp_path / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TTC_")}
    env.update(TTC_PORT=str(port), TTC_GENERATOR_URL=backends.generator.base_url,
               TTC_PRM_URL=backends.prm.base_url, PYTHONPATH="")
    with log.open("wb") as sink:
        proc = subprocess.Popen([str(fresh_venv / "bin" / "ttc-serve"), "serve"], cwd=tmp_path, env=env,
                                stdout=sink, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while True:
                assert proc.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                try:
                    if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.3)
            yield url, log
        finally:
            proc.terminate()
            proc.wait(timeout=60)


def test_the_installed_wheel_serves_auto_with_the_shipped_policy(
        fresh_venv: Path, installed_service: tuple[str, Path]) -> None:
    url, log = installed_service
    budget = 8e9
    reply = httpx.post(f"{url}/v1/completions", timeout=120, json={
        "model": Settings().model_name, "prompt": "question: 12+5\n", "flops_budget": budget})
    assert reply.status_code == 200, reply.text
    policy = CalibratedPolicy.load(EMBEDDED_POLICY)
    expected = policy.choose(None, budget)[0]
    assert not policy.depends_on_difficulty(budget)  # else the bin would decide; then see test_auto_e2e
    assert reply.json()["compute"]["strategy"] == expected != "best_of_n"
    # the policy came from the installed package, not from the checkout
    assert f"policy {fresh_venv}/lib/" in log.read_text()
