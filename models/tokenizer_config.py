"""A checkpoint's ``tokenizer_config.json``: where it names its chat template and revision layout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_tokenizer_config(model_dir: Path) -> dict[str, Any]:
    """The checkpoint's tokenizer config, empty where it has none."""
    path = model_dir / "tokenizer_config.json"
    return json.loads(path.read_text()) if path.exists() else {}
