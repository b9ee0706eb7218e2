"""Which model a checkpoint is: a short fingerprint of its content.

A calibrated policy is only valid for the models it was fitted on; the fingerprint is how a server
tells. It hashes the config and the weights where the weights are there; for a deployment whose
weights live on the vLLM servers (the directory holds only the HF config and tokenizer files), the
config and the tokenizer content, so that two fine-tunes of one architecture still differ. The
directory's name is written in front for people to read, and is not compared: the same files
mounted elsewhere are the same model.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")
CHUNK = 1 << 20


def _content(model_dir: Path) -> list[Path]:
    weights = sorted(model_dir.glob("*.safetensors"))
    return [model_dir / "config.json", *(weights or [model_dir / name for name in TOKENIZER_FILES])]


def fingerprint(model_dir: Path) -> str:
    """``<directory name>@<first 12 hex of sha256(config.json + weights, or + tokenizer files)>``."""
    digest = hashlib.sha256()
    for path in _content(model_dir):
        if path.exists():
            with path.open("rb") as f:
                while chunk := f.read(CHUNK):
                    digest.update(chunk)
    return f"{model_dir.name}@{digest.hexdigest()[:12]}"


def same_model(a: str, b: str) -> bool:
    """Whether two fingerprints name the same content (wherever it was mounted)."""
    return a.rpartition("@")[2] == b.rpartition("@")[2]
