"""Which model a checkpoint is: a short fingerprint of its config and weights.

A calibrated policy is only valid for the models it was fitted on; the fingerprint is how a server
tells. For a deployment whose weights live elsewhere (the GPU path: the directory holds only the HF
config used for FLOPs), the config alone is fingerprinted.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

WEIGHTS = ("model.safetensors",)
CHUNK = 1 << 20


def fingerprint(model_dir: Path) -> str:
    """``<directory name>@<first 12 hex of sha256(config.json + weights)>``."""
    digest = hashlib.sha256()
    for name in ("config.json", *WEIGHTS):
        path = model_dir / name
        if path.exists():
            with path.open("rb") as f:
                while chunk := f.read(CHUNK):
                    digest.update(chunk)
    return f"{model_dir.name}@{digest.hexdigest()[:12]}"
