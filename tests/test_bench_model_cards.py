"""Model cards quote a reproducibility verdict only for the weights it was measured on."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from bench import model_cards


def _verdict(path: Path, shipped: bytes) -> None:
    digest = hashlib.sha256(shipped).hexdigest()
    path.write_text(json.dumps({"checkpoints": {"prm": {
        "identical_weights": True, "shipped_sha256": digest, "rebuilt_sha256": digest}}}))


def test_a_verdict_on_these_weights_is_quoted(tmp_path: Path) -> None:
    (tmp_path / "prm").mkdir()
    (tmp_path / "prm" / "model.safetensors").write_bytes(b"weights")
    _verdict(tmp_path / "reproduce.json", b"weights")
    [line] = model_cards.reproduced("prm", tmp_path / "prm", tmp_path / "reproduce.json")
    assert "byte-identical" in line and hashlib.sha256(b"weights").hexdigest()[:12] in line


def test_a_verdict_on_replaced_weights_is_not(tmp_path: Path) -> None:
    (tmp_path / "prm").mkdir()
    (tmp_path / "prm" / "model.safetensors").write_bytes(b"new weights")
    _verdict(tmp_path / "reproduce.json", b"old weights")
    [line] = model_cards.reproduced("prm", tmp_path / "prm", tmp_path / "reproduce.json")
    assert "not yet measured" in line
    assert model_cards.reproduced("prm", tmp_path / "prm", tmp_path / "none.json") == [line]
