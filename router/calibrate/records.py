"""Run results, one JSON object per line, appended as they finish: an interrupted run resumes where
it stopped (a run is identified by its phase, configuration, budget and question)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

Key = tuple[str, str, float, str]


def key_of(row: dict[str, Any]) -> Key:
    return (row["phase"], row["config"], float(row["budget"]), row["qid"])


class RecordStore:
    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.rows: dict[Key, dict[str, Any]] = {}
        if path.exists():
            for line in path.read_text().splitlines():
                if line.strip():
                    row = json.loads(line)
                    self.rows[key_of(row)] = row

    def __contains__(self, key: Key) -> bool:
        return key in self.rows

    def add(self, row: dict[str, Any]) -> None:
        self.rows[key_of(row)] = row
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")

    def phase(self, phase: str) -> list[dict[str, Any]]:
        return [r for r in self.rows.values() if r["phase"] == phase]
