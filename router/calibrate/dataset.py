"""Question sets with exact answers: the embedded task's splits, or a JSONL file for other models."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ttc_serve.router.selection import extract_answer


@dataclass(frozen=True)
class Question:
    qid: str
    prompt: str
    answer: str
    level: int | None = None  # the task's own difficulty setting, where it has one

    def is_correct(self, text: str) -> bool:
        return extract_answer(text) == self.answer


def embedded_split(split: str, per_level: int | None = None) -> list[Question]:
    """The embedded arithmetic task's ``dev`` (calibration) or ``test`` split, the first
    ``per_level`` questions of each level."""
    from ttc_serve.models.embedded import task

    questions, seen = [], dict.fromkeys(task.LEVELS, 0)
    for i, problem in enumerate(task.held_out_split(split)):
        if per_level is not None and seen[problem.level] >= per_level:
            continue
        seen[problem.level] += 1
        questions.append(Question(qid=f"{split}-{i}", prompt=task.solve_prompt(problem),
                                  answer=str(problem.answer), level=problem.level))
    return questions


def jsonl_questions(path: Path) -> list[Question]:
    """One JSON object per line: ``prompt``, ``answer`` (compared with the extracted final answer),
    optional ``id`` and ``level``."""
    questions = []
    for i, line in enumerate(path.read_text().splitlines()):
        if line.strip():
            row = json.loads(line)
            questions.append(Question(qid=str(row.get("id", i)), prompt=row["prompt"],
                                      answer=str(row["answer"]), level=row.get("level")))
    return questions


def load_questions(source: str, per_level: int | None) -> list[Question]:
    """``embedded:dev`` / ``embedded:test``, or a path to a JSONL file."""
    if source.startswith("embedded:"):
        return embedded_split(source.removeprefix("embedded:"), per_level)
    return jsonl_questions(Path(source))
