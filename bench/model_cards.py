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
        "- **The reviser does not improve on its first attempt; it makes it worse** (the table "
        "above: level 2 0.32 → 0.03 over four attempts). Half of its revise examples show its own "
        "attempts as drawn (right or wrong, target the correct solution), half follow the paper "
        "(wrong attempts only). Read side by side, a revision copies an attempt and changes a digit "
        "(`84-15=69` → `84-15=79`). Tried on dev (40 questions per level × 4 chains, not shipped):\n"
        "  - on-policy contexts only, 32,000 distinct contexts, 1,000 revise steps: the first "
        "attempt rises a lot (the solve form was under-trained) but revisions still fall;\n"
        "  - a second stage with contexts re-sampled from that model: the fall halves, the sign "
        "stays;\n"
        "  - contexts whose last attempt is the correct solution or a synthetic near miss of it "
        "(one slipped digit, carried on), to teach repair at the slip: much worse "
        "(level 2 0.43 → 0.05).\n"
        "  Our reading (not a measurement): the cause is the one the PRM shows (its card): at this "
        "size the model does not learn to check a written step's arithmetic, so a context it "
        "cannot judge is noise to copy or perturb.\n"
        "- Level 5 (7 operations) is one operation beyond every training question; its pass@1 "
        "(0.004) measures that as much as the model's arithmetic."),
    "generator-large": (
        "- It saw exactly the training stream of the small generator's solve phase (1,500 steps of "
        "64 questions, same seed), at a lower learning rate and in bf16 autocast with fp32 master "
        "weights (2.2 s a step on 2 cores instead of 5.5 s in fp32). It has no revise phase, so its "
        "token count is the small one's minus that phase.\n"
        "- Level 5 (7 operations, one beyond its training questions) is 0 for it too: more "
        "parameters do not buy length generalisation here.\n"
        "- How it compares with spending the same FLOPs at test time is in docs/routing.md "
        "(`ttc-serve exchange`)."),
    "prm": (
        "- **It does not check a step's arithmetic.** Its AUROC across levels (0.87) comes from "
        "telling easy questions from hard ones; within a level it is 0.50–0.70, and best-of-16 "
        "weighted by it trails majority@16 at levels 2–4. Given `3+4=7` and `3+4=8` it scores both "
        "0.958. On dev, the top-scored of a question's 16 samples is right less often than a random "
        "one, whatever the aggregation (last, min, prod, mean).\n"
        "- Tried on dev (not shipped; recipe options `near_misses`, `rank_weight`, "
        "`extra_layers`): two synthetic near misses per question (the correct solution with one "
        "slipped digit, carried on) beside the correct one; a within-question ranking loss on the "
        "last step; two fresh layers on top of the generator's body. 2,000 steps at lr 1e-3 on "
        "the Math-Shepherd labels plus these (dev, 40 questions per level x 16 samples): top-1 "
        "stayed below a random sample at levels 2–4, and best-of-16 moved against majority by at "
        "most two questions of 40 either way.\n"
        "- What does train (probes, exact labels, level-1 near misses vs correct solutions, batch "
        "32): starting from the generator's body at lr 3e-4, batch accuracy reaches 0.88–0.91 "
        "within 750–1,500 steps, with or without two extra layers. A fresh body at lr 1e-3 stays "
        "at chance for 3,000 steps.\n"
        "- **A verification phase** (recipe options `verify_steps`, `verify_lr`, "
        "`verify_own_share`, `verify_mix`; default off, not shipped): exact per-step labels from "
        "the checker, no rollouts, on fresh training questions' correct solutions and near misses "
        "and on the generator's own samples, before the Math-Shepherd phase. Dev, 40 questions "
        "per level:\n"
        "  - at lr 1e-3 it learns nothing in 3,000 steps (correct solution vs near miss ranked "
        "right 43–58% per level); at lr 3e-4 it does: 0.72 / 0.72 / 0.67 at levels 2–4 after "
        "3,000 steps, 0.73 / 0.77 / 0.72 after 6,000 plus 1,500 Math-Shepherd steps (level 1 "
        "0.95);\n"
        "  - **on the generator's own samples it does not carry over**: within-level AUROC of the "
        "last step 0.57 / 0.49 / 0.53 at levels 2–4, and best-of-16 weighted 0.45 / 0.525 / 0.30 "
        "vs majority 0.50 / 0.525 / 0.325. With 2,000 more steps on mostly its own samples "
        "(80%): level 2 0.575 vs 0.50, but levels 3–4 0.50 / 0.275 vs 0.525 / 0.325, AUROC 0.38 / "
        "0.44 (worse than chance);\n"
        "  - our reading: a random slipped digit is easy to spot, the generator's own slips are "
        "not. They sit where its arithmetic is unsure, and a checker grown from the same body is "
        "unsure there too. On long chains every last-step score falls below 0.05, so the ranking "
        "within a question is noise. A checker that does better than the generator on its own "
        "mistakes needs more arithmetic than the generator has (e.g. a body from the larger "
        "generator, at ~14× the scoring FLOPs), or much longer training on its own mistakes.\n"
        "- A first try of the former: generator-large's body, 1,000 verification steps at lr 2e-4 "
        "in bf16 autocast (1.2 s a step, 20 min): it had not yet learned even the synthetic "
        "checks (correct vs near miss 0.40–0.58 per level), and best-of-16 stayed at or below "
        "majority (levels 2–4: 0.525 / 0.525 / 0.30 vs 0.50 / 0.525 / 0.325). 1,000 more steps "
        "at lr 3e-4 (40 min in all): still chance on the synthetic pairs (0.43–0.55). The small "
        "body began to learn only after ~2,000 steps at 3e-4; inconclusive, stopped for time.\n"
        "- **Where the signal is** (session 6, the same dev samples; within-question AUROC = AUROC "
        "of scores centred on their question's mean):\n"
        "  - the generator's own teacher-forced probability of each digit it wrote (no training) "
        "separates a question's right samples from its wrong ones: minimum over the result "
        "digits 0.78 / 0.76 / 0.74 at levels 2–4. At the first digit where a step's result leaves "
        "the right one (its left side right), right vs slipped digits: 0.98 / 0.97 / 0.96;\n"
        "  - that is a comparison across one position: the generator forms a digit's distribution "
        "at the position before it, and the digit is only read at its own position. Probes on the "
        "frozen generator at the digit's own position reach 0.85 on the digit-level measure "
        "(linear, final layer; 0.89 with the previous position's state beside it, MLP), and a PRM "
        "trained for it 0.83 (two fresh layers on the frozen body, per-character labels on step "
        "lines weighted toward the slips, 1,500 steps at 1e-3) — and 0.50–0.58 at the sample "
        "level. What they miss are the close calls, where the generator put, say, 0.6 on the "
        "right digit and 0.4 on the one it wrote: ordering those is the within-question signal. "
        "Other tries with the same outcome: per-character labels or the generator's own "
        "per-character probabilities as dense targets, body not frozen, lr 3e-4, 800–1,500 "
        "steps on 64,000 fresh own samples (70%) and near misses;\n"
        "  - even that exact signal is too weak from the small generator: best-of-16 weighted by "
        "its minimum digit probability 0.60 / 0.475 / 0.30 vs majority 0.575 / 0.475 / 0.30 "
        "(product over the digits: 0.55 / 0.55 / 0.35). Weighted by generator-large's "
        "probabilities: 0.675 / 0.575 / 0.375, majority + 0.10 / 0.10 / 0.075 (within-question "
        "AUROC 0.75);\n"
        "  - our reading: the small generator's confidence is mostly what majority voting already "
        "counts (the answer its own distribution favours); a verifier adds to majority only with "
        "knowledge the generator lacks, as generator-large's probabilities do. Next: a PRM body "
        "from generator-large (~14× "
        "the scoring FLOPs, for the policy to weigh) with the one-position look-back built in (a "
        "previous-token attention head whose values are the body's digit logits), the rest "
        "trained."),
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


def _reproduced(name: str) -> list[str]:
    """The fact line from the last ``make reproduce`` that rebuilt this checkpoint, if any."""
    path = RESULTS / "reproduce.json"
    facts = json.loads(path.read_text())["checkpoints"].get(name) if path.exists() else None
    if facts is None:
        return []
    if facts["identical_weights"]:
        return [f"- reproduced: the training command above, re-run from scratch into another "
                f"directory (as `make reproduce` does), gave byte-identical weights (sha256 "
                f"{facts['rebuilt_sha256'][:12]}…)"]
    return ["- reproduced: a re-run of the training command gave different weights; its tables "
            "against the shipped ones are in `bench/results/reproduce.json`"]


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
    parts += _reproduced(name)
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
