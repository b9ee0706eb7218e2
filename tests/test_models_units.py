"""Tokenizer, chat template and FLOPs cost model."""

from __future__ import annotations

import json
import math
from pathlib import Path

from transformers import AutoTokenizer

from ttc_serve.app.settings import Settings
from ttc_serve.models.chat import ChatTemplate
from ttc_serve.models.cost import FlopsModel
from ttc_serve.models.embedded.task import STEP_TAG


def test_tokenizer_is_character_level_with_bos_and_one_step_token() -> None:
    tokenizer = AutoTokenizer.from_pretrained(Settings().generator_dir)
    text = "question: 12+5\n12+5=17\nanswer: 17\n"
    ids = tokenizer(text).input_ids
    assert ids[0] == tokenizer.bos_token_id and len(ids) == len(text) + 1
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    tagged = tokenizer(f"1+1=2{STEP_TAG}\n", add_special_tokens=False).input_ids
    assert tagged.count(tokenizer.convert_tokens_to_ids(STEP_TAG)) == 1 and len(tagged) == 7


def test_chat_template_makes_the_solve_prompt() -> None:
    template = ChatTemplate.from_model_dir(Settings().generator_dir)
    assert template is not None
    assert template.render([{"role": "user", "content": " 3+4 "}], strip_bos=True) == "question: 3+4\n"
    assert template.render([{"role": "user", "content": "question: 3+4"}]) == "<bos>question: 3+4\n"


def test_cost_model_counts_parameters_from_the_config() -> None:
    settings = Settings()
    config = json.loads((settings.generator_dir / "config.json").read_text())
    cost = FlopsModel.from_model_dir(settings.generator_dir)
    d, layers, ffn, vocab = (config[k] for k in ("hidden_size", "num_hidden_layers",
                                                 "intermediate_size", "vocab_size"))
    assert cost.matmul_params == layers * (4 * d * d + 3 * d * ffn) + d * vocab
    prm = FlopsModel.from_model_dir(settings.prm_dir)
    prm_config = json.loads((settings.prm_dir / "config.json").read_text())
    pd = prm_config["hidden_size"]
    assert prm.matmul_params == prm_config["num_hidden_layers"] * (
        4 * pd * pd + 3 * pd * prm_config["intermediate_size"]) + pd * pd + 2 * pd


def test_cost_of_a_span_is_matmuls_plus_attention_by_position() -> None:
    cost = FlopsModel(matmul_params=1000, n_layers=2, attention_width=8)
    # positions 0..2 attend to 1, 2, 3 tokens
    assert cost.span(0, 3) == 2 * 1000 * 3 + 4 * 2 * 8 * (1 + 2 + 3)  # QK^T + AV per query head
    assert cost.sequence(10, cached_tokens=4, generated=5) == cost.span(4, 15)
    assert cost.generation(10, 0, [3, 5]) == cost.span(0, 10) + cost.span(10, 13) + cost.span(10, 15)
    assert math.isclose(cost.span(0, 100), sum(cost.span(i, i + 1) for i in range(100)))


def test_stopping_a_server_kills_an_unready_one_at_once_and_tidies_only_a_served_ones_log(
        tmp_path: Path) -> None:
    """A stand-in process that ignores SIGTERM (as vLLM does while it loads)."""
    import os
    import subprocess
    import sys
    import time

    from ttc_serve.models.launcher import ServerSpec, VllmServer

    ignore_term = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    spec = ServerSpec(model_dir=tmp_path, served_name="stand-in")
    for ready in (False, True):
        log = tmp_path / f"server-{ready}.log"
        log.write_text("log")
        server = VllmServer(spec, process=subprocess.Popen([sys.executable, "-c", ignore_term],
                                                           preexec_fn=os.setsid),
                            log_path=log, ready=ready)
        time.sleep(0.5)
        started = time.monotonic()
        server.stop(grace_s=5.0)
        assert server.process is None
        # unready: no grace; ready: SIGTERM ignored, SIGKILL after the grace
        assert (time.monotonic() - started < 2.0) != ready
        assert log.exists() != ready


def test_free_ports_lie_below_the_ephemeral_range_so_no_outgoing_socket_can_take_them() -> None:
    import socket

    from ttc_serve.models.launcher import ephemeral_range_start, free_port

    low = ephemeral_range_start()
    ports = {free_port() for _ in range(20)}
    assert all(1024 <= p < low for p in ports) and len(ports) > 1
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # free when handed out
