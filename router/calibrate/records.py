"""Run results, one JSON object per line, appended as they finish: an interrupted run resumes where
it stopped (a run is identified by its phase, configuration, budget and question).

A store may be bound to a context (the models' fingerprints, the questions, the policy): records
written under another context are moved aside, never resumed from, because a question id such as
``dev-3`` means another question once the split or the models change."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

Key = tuple[str, str, float, str]


def key_of(row: dict[str, Any]) -> Key:
    return (row["phase"], row["config"], float(row["budget"]), row["qid"])


def questions_digest(items: Iterable[Any]) -> str:
    """A short digest of what the questions are (ids, prompts, answers), for a store's context."""
    digest = hashlib.sha256()
    for item in items:
        digest.update(json.dumps([item.qid, item.prompt, item.answer]).encode())
    return digest.hexdigest()[:16]


class RecordStore:
    def __init__(self, path: Path, context: dict[str, str] | None = None):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.rows: dict[Key, dict[str, Any]] = {}
        self.stale: Path | None = None
        if context is not None:
            self._bind(context)
        if path.exists():
            for line in path.read_text().splitlines():
                if line.strip():
                    row = json.loads(line)
                    self.rows[key_of(row)] = row

    def _bind(self, context: dict[str, str]) -> None:
        context_path = self.path.with_suffix(".context.json")
        saved = json.loads(context_path.read_text()) if context_path.exists() else None
        if saved != context and self.path.exists():
            self.stale = self.path.with_suffix(".stale.jsonl")
            self.path.replace(self.stale)
        context_path.write_text(json.dumps(context, indent=1, sort_keys=True) + "\n")

    def __contains__(self, key: Key) -> bool:
        return key in self.rows

    def add(self, row: dict[str, Any]) -> None:
        self.rows[key_of(row)] = row
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")

    def phase(self, phase: str) -> list[dict[str, Any]]:
        return [r for r in self.rows.values() if r["phase"] == phase]


def run_context(models: dict[str, str], items: Iterable[Any], policy_json: str | None = None,
                **extra: str) -> dict[str, str]:
    """What a run's records depend on: the models' fingerprints, the questions and (for ``auto``)
    the policy."""
    context = {**models, "questions": questions_digest(items), **extra}
    if policy_json is not None:
        context["policy"] = hashlib.sha256(policy_json.encode()).hexdigest()[:16]
    return context
