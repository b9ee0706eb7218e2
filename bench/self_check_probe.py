"""Where does a generator's first attempt go wrong, and could it catch that itself? On the dev split,
for one checkpoint's solve form (torch, no server):

- error anatomy: the first invalid step of each wrong sample, by kind (lhs not the running value,
  wrong operator, wrong operand, wrong result), and for a wrong result which digit (counted from the
  units) was off and by how much;
- self-check: each step ``a op b = c`` checked by its inverse, ``c op' b``, computed by the same
  model as the first step of ``c op' b+0+0+0`` (a question of the training mix's shape), and how often
  that check passes a right step and fails a wrong one; as a control for posing a step so, the
  correct solution's forward steps posed the same way (``a op b+0+0+0``) and their inverses;
- an idealised check-then-revise: at the first step whose check fails, the step is redrawn until its
  result differs from the attempt's, and the solution is continued from there: what a reviser that
  checks its attempt with the arithmetic the model has now, and acts on the check perfectly, would
  reach (a reviser trained to check could check better than this proxy does; the probe says how
  much better it would have to).

Usage: ``python -m bench.self_check_probe DIR [--per-level 30] [--samples 4] [--out FILE]``.
"""

from __future__ import annotations

import json
import re
import statistics
from collections import Counter, defaultdict
from pathlib import Path

import torch
import typer
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

from models.embedded import task

LEVELS = (2, 3, 4)
Step = tuple[int, str, int, int]  # lhs, op, rhs, result


def parse_step(line: str) -> Step | None:
    match = task.STEP_RE.match(line)
    return None if match is None else (int(match[1]), match[2], int(match[3]), int(match[4]))


def first_error(problem: task.Problem, solution: str) -> str | None:
    """The kind of a solution's first invalid step (None when the solution is correct): ``lhs``,
    ``operator``, ``operand``, ``result:<digit from the units>:<how far off>``, ``result:length``,
    ``malformed``, ``steps`` (too many or too few)."""
    if task.grade(problem, solution).correct:
        return None
    expected = problem.operands[0]
    for i, line in enumerate(task.split_steps(solution)):
        if i >= len(problem.ops):
            return "steps"
        step = parse_step(line)
        if step is None:
            return "steps" if line.startswith(task.ANSWER_PREFIX.strip()) else "malformed"
        lhs, op, rhs, result = step
        if lhs != expected:
            return "lhs"
        if op != problem.ops[i]:
            return "operator"
        if rhs != problem.operands[i + 1]:
            return "operand"
        true = lhs + rhs if op == "+" else lhs - rhs
        if result != true:
            want, got = str(abs(true)), str(abs(result))
            if len(want) != len(got) or (true < 0) != (result < 0):
                return "result:length"
            digit = next(j for j in range(len(want)) if want[j] != got[j])
            return f"result:{len(want) - 1 - digit}:{abs(int(want[digit]) - int(got[digit]))}"
        expected = true
    return "steps"


def forward_prompt(lhs: int, op: str, rhs: int) -> str:
    """The step ``lhs op rhs`` posed as the first step of a question, as ``check_prompt`` poses a check."""
    return f"question: {lhs}{op}{rhs}+0+0+0\n"


def check_prompt(op: str, rhs: int, result: int) -> str:
    """The inverse of ``lhs op rhs = result`` as a question whose first step recomputes ``lhs``."""
    inverse = "+" if op == "-" else "-"
    return f"question: {result}{inverse}{rhs}+0+0+0\n"


class SolveForm:
    def __init__(self, model_dir: Path, temperature: float):
        self.tokenizer = PreTrainedTokenizerFast.from_pretrained(model_dir)
        self.model = LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        self.model.eval()  # type: ignore[no-untyped-call]
        self.temperature = temperature

    def generate(self, prompts: list[str], max_new_tokens: int = 160) -> list[str]:
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left")
        with torch.no_grad():
            out = self.model.generate(  # type: ignore[operator]
                **enc, do_sample=True, temperature=self.temperature, top_k=0,
                max_new_tokens=max_new_tokens, pad_token_id=self.tokenizer.pad_token_id,
                eos_token_id=self.tokenizer.eos_token_id)
        width = enc.input_ids.shape[1]
        return [self.tokenizer.decode(row[width:], skip_special_tokens=True) for row in out]

    def first_results(self, prompts: list[str], wanted: list[int]) -> list[bool]:
        """Per prompt: is the first step's result the wanted one?"""
        if not prompts:
            return []
        passed = []
        for want, text in zip(wanted, self.generate(prompts, 30), strict=True):
            lines = task.split_steps(text)
            step = parse_step(lines[0]) if lines else None
            passed.append(step is not None and step[3] == want)
        return passed

    def checks(self, steps: list[Step]) -> list[bool]:
        """Per step: does the model's own inverse computation give back its lhs?"""
        return self.first_results([check_prompt(op, rhs, res) for _, op, rhs, res in steps],
                                  [lhs for lhs, *_ in steps])

    def posed_steps(self, problem: task.Problem) -> tuple[list[bool], list[bool]]:
        """The correct solution's steps posed as questions' first steps: forward, and inverse."""
        parsed = [s for s in map(parse_step, task.split_steps(problem.solution())) if s is not None]
        forward = [(lhs, op, rhs, res) for lhs, op, rhs, res in parsed if lhs >= 0]
        inverse = [(lhs, op, rhs, res) for lhs, op, rhs, res in parsed if res >= 0]
        return (self.first_results([forward_prompt(lhs, op, rhs) for lhs, op, rhs, _ in forward],
                                   [res for *_, res in forward]),
                self.checks(inverse))

    def redraw(self, prefix: str, avoid: int, tries: int = 8) -> str | None:
        """A continuation of ``prefix`` (ending in ``=``) whose result is not ``avoid``."""
        for text in self.generate([prefix] * tries):
            head = text.split("\n")[0]
            if re.fullmatch(r"-?\d+", head) and int(head) != avoid:
                return text
        return None


def check_then_revise(form: SolveForm, problem: task.Problem,
                      attempt: str) -> tuple[str, list[tuple[bool, bool]]]:
    """The revised attempt, and per checked step (valid, check passed)."""
    lines = task.split_steps(attempt)
    parsed = [(i, s) for i, s in enumerate(map(parse_step, lines)) if s is not None]
    steps = [step for _, step in parsed]
    valid = task.grade(problem, attempt).steps_valid
    # A negative result cannot be posed as a question (they start with a number): left unchecked.
    posable = [step for step in steps if step[3] >= 0]
    verdicts = iter(form.checks(posable))
    passed = [next(verdicts) if step[3] >= 0 else True for step in steps]
    seen = [(valid[i], ok) for (i, _), ok in zip(parsed, passed, strict=True)]
    for (i, _), (lhs, op, rhs, result), ok in zip(parsed, steps, passed, strict=True):
        if not ok:
            prefix = "".join(line + "\n" for line in lines[:i]) + f"{lhs}{op}{rhs}="
            tail = form.redraw(task.solve_prompt(problem) + prefix, result)
            return (attempt if tail is None else prefix + tail), seen
    return attempt, seen


def main(model_dir: Path, per_level: int = typer.Option(30, min=1, max=120),
         samples: int = typer.Option(4, min=1, max=16),
         temperature: float = typer.Option(0.8, min=0.05, max=2.0), seed: int = 0,
         out: Path | None = None) -> None:
    torch.manual_seed(seed)
    form = SolveForm(model_dir, temperature)
    held_out = task.held_out_split("dev")
    report: dict[str, dict[str, object]] = {}
    for level in LEVELS:
        errors: Counter[str] = Counter()
        stats: dict[str, list[float]] = defaultdict(list)
        for problem in [p for p in held_out if p.level == level][:per_level]:
            forward, inverse = form.posed_steps(problem)
            stats["control_forward_step_posed"] += forward
            stats["control_inverse_step_posed"] += inverse
            for attempt in form.generate([task.solve_prompt(problem)] * samples):
                kind = first_error(problem, attempt)
                if kind is not None:
                    errors[kind] += 1
                revised, seen = check_then_revise(form, problem, attempt)
                stats["first"].append(kind is None)
                stats["revised"].append(task.grade(problem, revised).correct)
                stats["check_passes_valid_step"] += [ok for valid, ok in seen if valid]
                stats["check_fails_invalid_step"] += [not ok for valid, ok in seen if not valid]
                stats["right_attempt_changed"] += [revised != attempt] if kind is None else []
        report[str(level)] = {"attempts": len(stats["first"]),
                              **{k: round(statistics.fmean(v), 3) for k, v in stats.items() if v},
                              "first_errors": dict(errors.most_common())}
        typer.echo(f"level {level}: {json.dumps(report[str(level)])}")
    payload = {"model_dir": str(model_dir), "split": "dev", "questions_per_level": per_level,
               "samples": samples, "temperature": temperature, "levels": report}
    if out is not None:
        out.write_text(json.dumps(payload, indent=1) + "\n")


if __name__ == "__main__":
    typer.run(main)
