"""Write each shipped checkpoint's model card (README.md) from its training.json and the measured
tables in bench/results/models.json. ``python -m bench.model_cards``."""

from __future__ import annotations

import json
from typing import Any

from app.settings import EMBEDDED_DIR
from bench.eval_models import RESULTS
from models.embedded import task

COMMANDS = {
    "generator-small": "ttc-serve train generator --size small",
    "generator-large": "ttc-serve train generator --size large --no-revisions",
    "prm": "ttc-serve train prm --generator models/embedded/checkpoints/generator-small",
}
ROLES = {
    "generator-small": "the embedded generator: solves (``question: ..``) and revises "
                       "(``.. attempt: .. revision:``) step-by-step arithmetic",
    "generator-large": "a ~14x larger generator, same recipe and data (solve only), for the paper's "
                       "FLOPs-matched comparison of test-time compute against model size",
    "prm": "the process reward model (Qwen2ForProcessRewardModel, the Qwen2.5-Math-PRM architecture):"
           " one [p_bad, p_good] per step tag `<step>`",
}


KNOWN_LIMITS = {
    "generator-small": (
        "- **The reviser still does not improve on its first attempt** (the table above), though it "
        "falls far less than the first version did (level 3: 0.58 → 0.20 over four attempts, was "
        "0.52 → 0.03). Half of its revise examples now show its own attempts as drawn (right or "
        "wrong, target the correct solution), half follow the paper (wrong attempts only). Read "
        "side by side, its revisions keep a correct attempt about half the time and otherwise "
        "perturb numbers (`84-15=69` → `84-15=79`): the wrong-only half teaches that an attempt in "
        "context must change, and at 0.9M parameters it cannot tell which step is wrong. Tried "
        "since (dev split, not shipped): on-policy contexts only; then 32,000 distinct on-policy "
        "contexts (8,000 questions) and 1,000 revise steps. The latter lifts the first attempt a "
        "lot (level 3 0.80, level 4 0.60: the solve form was under-trained) but revisions still "
        "fall (level 4 0.60 → 0.34). Its contexts come from the model before the revise phase, "
        "which is right far less often than the model that will read them: it learns that an "
        "attempt is usually wrong and changes a digit. A second stage with contexts re-sampled from "
        "the revised model (500 more steps) halves the fall at level 4 (0.73 → 0.53) and lifts the "
        "first attempt again (level 5 0.41), but revisions still fall at every level above 1.\n"
        "- Level 5 pass@1 is 0.125, above the 0.1 the task asks of its hardest setting; level 5 "
        "needs to be harder (e.g. 7 operations)."),
    "generator-large": (
        "- It saw exactly the training stream of the small generator's solve phase (1,500 steps of "
        "64 questions, same seed), at a lower learning rate and in bf16 autocast with fp32 master "
        "weights (2.2 s a step on 2 cores instead of 5.5 s in fp32). It has no revise phase, so its "
        "token count is the small one's minus that phase.\n"
        "- At ~14.6x the small one's parameters it gains most where the small one is weakest "
        "(greedy vs the small one's pass@1 above); how that compares with spending the same FLOPs "
        "at test time is in docs/routing.md (`ttc-serve exchange`)."),
    "prm": (
        "- Started from the generator's weights (as Qwen2.5-Math-PRM starts from its policy model) "
        "and trained on 8 samples per question, it still discriminates weakly within a level "
        "(AUROC 0.66–0.72; 0.86 across levels): best-of-16 weighted ties majority@16 at levels 2–3 "
        "and trails it at 4–5. That AUROC comes from between questions (how hard each is), not "
        "from within one: on dev, the single top-scored of a question's 16 samples is right less "
        "often than a random one (level 3: 0.33 vs pass@1 0.59; level 4: 0.05 vs 0.36), whatever "
        "the aggregation (last, min, prod, mean). Next: a loss that ranks a question's own samples, "
        "and more near-miss negatives (one wrong digit, the generator's usual slip)."),
}


def _levels_table() -> str:
    rows = ["| level | test/dev: operations | operand digits | training mix: operations | operand digits |",
            "|---|---|---|---|---|"]
    for level, ((o1, o2), (d1, d2)) in task.LEVELS.items():
        (t1, t2), (e1, e2) = task.TRAINING_MIX[level]
        rows.append(f"| {level} | {o1}–{o2} | {d1}–{d2} | {t1}–{t2} | {e1}–{e2} |")
    return "\n".join(rows)


def _fmt(x: Any) -> str:
    return f"{x:.3f}" if isinstance(x, float) else str(x)


def small_tables(small: dict[str, Any]) -> str:
    n = small["samples_per_question"]
    keys = ["pass@1", f"coverage@{n}", f"majority@{n}", f"best_of_{n}_weighted", "prm_auroc"]
    lines = ["| level | questions | " + " | ".join(keys) + " |", "|---" * (len(keys) + 2) + "|"]
    for level, stats in small["levels"].items():
        lines.append(f"| {level} | {stats['questions']} | " + " | ".join(_fmt(stats[k]) for k in keys) + " |")
    lines.append(f"\nPRM AUROC over all test samples (last-step score, correct vs wrong final answer): "
                 f"**{small['prm_auroc_overall']:.3f}**.\n")
    lines.append(f"Sequential revisions ({small['revision_chains_per_question']} chains of 4 per "
                 "question, T=0.8), pass@1 of each attempt:\n")
    lines.append("| level | attempt 1 | attempt 2 | attempt 3 | attempt 4 |\n|---|---|---|---|---|")
    for level, stats in small["levels"].items():
        by = stats["revision_pass@1_by_attempt"]
        lines.append(f"| {level} | " + " | ".join(_fmt(v) for v in by) + " |")
    return "\n".join(lines)


def large_table(large: dict[str, Any], small: dict[str, Any] | None) -> str:
    lines = ["| level | greedy | pass@1 (T=0.8) | small pass@1 (T=0.8) |", "|---|---|---|---|"]
    for level, stats in large["levels"].items():
        small_p = small["levels"][level]["pass@1"] if small else float("nan")
        lines.append(f"| {level} | {_fmt(stats['greedy'])} | {_fmt(stats['pass@1'])} | {_fmt(small_p)} |")
    return "\n".join(lines)


def card(name: str, results: dict[str, Any]) -> str:
    directory = EMBEDDED_DIR / name
    training = json.loads((directory / "training.json").read_text())
    config = json.loads((directory / "config.json").read_text())
    report = training["report"]
    phases = ", ".join(f"{k} {v / 60:.1f} min" for k, v in report["phases"].items())
    parts = [
        f"# {name}\n", f"{ROLES[name]}.\n",
        "## Facts\n",
        f"- architecture: `{config['architectures'][0]}`, hidden {config['hidden_size']}, "
        f"{config['num_hidden_layers']} layers, {config['num_attention_heads']} heads, "
        f"MLP {config['intermediate_size']}; character-level tokenizer ({config['vocab_size']} tokens)",
        f"- parameters: {report['parameters']:,}; stored as bf16 safetensors",
        f"- training command: `{COMMANDS[name]}` (CPU, 2 threads, seed {training['recipe']['seed']})",
        f"- training time: {report['seconds'] / 60:.1f} min ({phases})",
        f"- tokens seen in training: {report['tokens']:,} (pre-training tokens for the FLOPs-matched "
        "comparison)",
        f"- recipe: `{json.dumps(training['recipe'])}`",
    ]
    if "labels" in training:
        labels = training["labels"]
        parts.append(f"- labels: {labels['examples']} sampled solutions, {labels['steps']} steps, "
                     f"mean label {labels['mean']:.3f}, {labels['soft_fraction']:.0%} soft (0<y<1) — "
                     "Math-Shepherd values from generator rollouts for every still-valid step prefix; "
                     "steps after an invalid one get the exact checker's 0 (a rollout cannot repair a "
                     "wrong running value here); the answer step gets its exact correctness")
    parts += ["\n## Data\n",
              "Synthetic chains of + and − (`models/embedded/task.py`), one step per line, final line "
              "`answer: N`; graded exactly. Training questions never include a dev or test question. "
              "The training mix and the held-out levels (level 5 asks for one operation more than "
              "any training question):\n", _levels_table(), ""]
    parts.append("## Measured on the test split (`make eval-models`)\n")
    if name in ("generator-small", "prm") and "small" in results:
        parts.append(small_tables(results["small"]))
    if name == "generator-large" and "large" in results:
        parts.append(large_table(results["large"], results.get("small")))
    if name in KNOWN_LIMITS:
        parts += ["\n## Known limitations\n", KNOWN_LIMITS[name]]
    return "\n".join(parts) + "\n"


def main() -> None:
    path = RESULTS / "models.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    for name in COMMANDS:
        if (EMBEDDED_DIR / name / "training.json").exists():
            (EMBEDDED_DIR / name / "README.md").write_text(card(name, results))
            print(f"wrote {EMBEDDED_DIR / name / 'README.md'}")


if __name__ == "__main__":
    main()
