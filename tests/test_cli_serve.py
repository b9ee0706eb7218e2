"""`ttc-serve serve` on the embedded default: it starts its own vLLM CPU servers, answers, and leaves
nothing running when it stops: on Ctrl-C, on a failed start, or when it is killed outright."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import psutil
import pytest

from ttc_serve.app.settings import Settings
from ttc_serve.models.launcher import free_port
from ttc_serve.router.selection import extract_answer

SERVE = [str(Path(sys.executable).parent / "ttc-serve"), "serve"]


def _start(env_extra: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = dict(os.environ, TTC_PORT=str(port), **env_extra)
    return subprocess.Popen(SERVE, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE), port


def _wait_ready(proc: subprocess.Popen[bytes], port: int, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, (proc.stderr.read() if proc.stderr else b"").decode()[-3000:]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError("service not ready in time")


def _exit_status(proc: subprocess.Popen[bytes], timeout_s: float) -> tuple[int, str]:
    """Wait for the service to exit while reading its stderr (unread, a full pipe would block its
    exit); on a timeout, fail with what it had written, to show where it stood."""
    try:
        _, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"still running {timeout_s:.0f}s after the signal; its stderr:\n"
                             f"{err.decode(errors='replace')[-3000:]}") from None
    return proc.returncode, err.decode(errors="replace")


def _group(process: psutil.Process) -> int | None:
    try:
        return os.getpgid(process.pid)
    except ProcessLookupError:
        return None


def _assert_all_gone(procs: list[psutil.Process]) -> None:
    _, alive = psutil.wait_procs(procs, timeout=60)
    assert not alive, [p.pid for p in alive]


def test_serve_answers_and_ctrl_c_stops_everything() -> None:
    proc, port = _start({})
    try:
        _wait_ready(proc, port)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 2  # the generator's and the PRM's vLLM servers (+ engine cores)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none")
        reply = client.completions.create(model=Settings().model_name, prompt="question: 4+5\n",
                                          extra_body={"flops_budget": 8e9})
        assert extract_answer(reply.choices[0].text) == "9"
        assert reply.model_extra["compute"]["flops_used"] <= 8e9
        # The PRM's server dies: it is reaped (its engine process too) and started again.
        [prm] = [c for c in children if "prm" in c.cmdline() and "--served-model-name" in c.cmdline()]
        prm_group = [c for c in children if _group(c) == prm.pid]
        prm.kill()
        _assert_all_gone(prm_group)
        restarted = time.monotonic()
        _wait_ready(proc, port, timeout_s=240)
        scored = client.completions.create(model=Settings().model_name, prompt="question: 4+5\n",
                                           extra_body={"flops_budget": 2e10, "strategy": "best_of_n"})
        assert extract_answer(scored.choices[0].text) == "9"
        back_in = time.monotonic() - restarted
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        assert 'ttc_backend_restarts{backend="prm"} 1.0' in metrics, back_in
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        children = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGINT)
        assert _exit_status(proc, 90)[0] == 0
        _assert_all_gone(children)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_failed_start_exits_and_leaves_nothing(tmp_path: Path) -> None:
    broken = tmp_path / "prm"
    shutil.copytree(Settings().prm_dir, broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    proc, _ = _start({"TTC_PRM_DIR": str(broken)})
    seen: dict[int, psutil.Process] = {}  # every descendant observed while it tried to start
    try:
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                seen.update({c.pid: c for c in psutil.Process(proc.pid).children(recursive=True)})
            except psutil.NoSuchProcess:
                break
            time.sleep(0.2)
        status, log = _exit_status(proc, 30)
        assert status != 0
        assert seen, "the service never started its vLLM servers"
        _assert_all_gone(list(seen.values()))
        assert "vLLM server for prm exited" in log
    finally:
        if proc.poll() is None:
            proc.kill()


def test_ctrl_c_during_start_up_stops_at_once_and_leaves_nothing() -> None:
    """Ctrl-C while the embedded servers are still starting: the start is abandoned (it is not run to
    completion first, as when the servers started inside uvicorn's start-up) and nothing is left."""
    proc, _ = _start({})
    try:
        children = _wait_for_engine_cores(proc)
        proc.send_signal(signal.SIGINT)
        status, log = _exit_status(proc, 60)
        assert status == 0, log[-2000:]
        _assert_all_gone(children)
        assert "Application startup complete" not in log, log[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("sig", [signal.SIGKILL])
def test_killed_service_takes_its_servers_with_it(sig: signal.Signals) -> None:
    proc, port = _start({})
    try:
        _wait_ready(proc, port)
        children = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(sig)
        proc.wait(timeout=30)
        _assert_all_gone(children)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_sigterm_during_an_offline_run_stops_its_vllm_servers(tmp_path: Path) -> None:
    """calibrate/bench/train start servers of their own; SIGTERM (a job scheduler's stop) while
    they are still starting must not leave them behind."""
    command = [str(Path(sys.executable).parent / "ttc-serve"), "calibrate", "--per-level", "1",
               "--budgets", "1e9", "--out-dir", str(tmp_path), "--policy-out", str(tmp_path / "p.json")]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        children = _wait_for_engine_cores(proc)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=90)
        _assert_all_gone(children)
    finally:
        if proc.poll() is None:
            proc.kill()


def _wait_for_engine_cores(proc: subprocess.Popen[bytes]) -> list[psutil.Process]:
    """Until both vLLM engine cores run: mid start-up, the window in which vLLM once ignored its
    parent's death. Returns every descendant seen then."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        time.sleep(0.5)
        assert proc.poll() is None, "exited before its servers started"
        children = psutil.Process(proc.pid).children(recursive=True)
        if sum("EngineCore" in " ".join(_cmdline(c)) for c in children) >= 2:
            return children
    raise AssertionError("the vLLM engines never started")


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return [process.name(), *process.cmdline()]
    except psutil.Error:
        return []


def test_ctrl_c_mid_calibration_grid_stops_at_once_and_keeps_finished_runs(tmp_path: Path) -> None:
    """Ctrl-C once the grid runs: calibrate stops within seconds (it does not run the grid out and
    fit a policy), its vLLM servers go with it, and the runs it finished stay on disk for a resume.

    SIGINT is reset to its default in the child: a shell that starts a command in the background
    without job control sets it to SIG_IGN, and Python then never installs its Ctrl-C handler (which
    made this look like a bug once; a terminal's Ctrl-C reaches a foreground command as here)."""
    log = tmp_path / "log"
    command = [str(Path(sys.executable).parent / "ttc-serve"), "calibrate", "--per-level", "4",
               "--budgets", "3.2e10", "--out-dir", str(tmp_path), "--policy-out", str(tmp_path / "p.json")]
    with log.open("wb") as stderr:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        children = _wait_for_engine_cores(proc)
        # Ctrl-C once the grid has finished a run (others are then in flight on both servers): a
        # fixed wait after "grid runs" was too short for any to finish on slower CPUs.
        deadline, records_file = time.monotonic() + 300, tmp_path / "records.jsonl"
        while not (records_file.exists() and b'"phase": "grid"' in records_file.read_bytes()):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        finished = records_file.read_text().count('"phase": "grid"')
        proc.send_signal(signal.SIGINT)
        started = time.monotonic()
        proc.wait(timeout=60)
        assert time.monotonic() - started < 30, "Ctrl-C waited for the grid"
        assert proc.returncode != 0
        assert not (tmp_path / "p.json").exists()
        _assert_all_gone(children)
        assert records_file.read_text().count('"phase": "grid"') >= finished  # none lost
    finally:
        if proc.poll() is None:
            proc.kill()
