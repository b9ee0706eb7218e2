"""Write each shipped checkpoint's model card (README.md) from its training.json and the measured
tables in bench/results/models.json. ``python -m bench.model_cards``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.eval_models import RESULTS
from bench.reproduce import weights_digest
from ttc_serve.app.settings import EMBEDDED_DIR
from ttc_serve.models.embedded import task

COMMANDS = {
    "generator-small": "ttc-serve train generator --size small` (solve and revise stages, into "
                       "build/generator-small-solver), then `ttc-serve train checker",
    "generator-large": "ttc-serve train generator --size large --no-revisions",
    "prm": "ttc-serve train prm --generator build/generator-small-solver "
           "--body models/embedded/checkpoints/generator-large",
}
ROLES = {
    "generator-small": "the embedded generator: solves step-by-step arithmetic (``question: ..``), "
                       "checks one step of a solution (``check 114+38=`` → ``251``, the result "
                       "written least significant digit first), which the `revisions` strategy "
                       "uses to check and repair its attempts, and keeps the paper's revise prompt "
                       "form (``.. attempt: .. revision:``)",
    "generator-large": "a ~14x larger generator, same recipe and data (solve only), for the paper's "
                       "FLOPs-matched comparison of test-time compute against model size",
    "prm": "the process reward model (Qwen2ForProcessRewardModel, the Qwen2.5-Math-PRM architecture):"
           " one [p_bad, p_good] per step tag `<step>`, which ends each step in the newline's place"
           " (`question: 3+4\\n3+4=7<step>answer: 7<step>`)",
}


KNOWN_LIMITS = {
    "generator-small": (
        "- **Its revisions are check and repair, not the paper's revise prompt.** The model checks "
        "each step of its attempt (the check form above); the service compares the check with the "
        "written result, cuts the attempt at the first disagreement, writes the check's result "
        "there and lets the model go on. No ground truth is used anywhere, and every check is in "
        "the FLOPs account, but the reading of the attempt is the procedure's, not the model's: "
        "read in context, by the revise prompt (`strategy_params.mode = \"revise\"`, still in the "
        "checkpoint), its revisions make the answer worse (the solve-and-revise stage, test, "
        "attempt 1 → 4: 0.317 → 0.027 / 0.279 → 0.017 / 0.148 → 0.023 on levels 2 / 3 / 4). "
        "Twenty rows of what was tried before, with every figure: `docs/reviser.md`.\n"
        "- The check stage is fine-tuning with a KL anchor to the solve-and-revise stage on correct "
        "solutions, which holds the first attempts where they were (pass@1 above against that "
        "stage's 0.982 / 0.331 / 0.320 / 0.147 / 0.004), so the difficulty spread stays; without "
        "the anchor the drills also made a better solver (level 2 pass@1 0.53, which breaks "
        "coverage@16 ≥ 2 × pass@1).\n"
        "- A check is one greedy completion: exact for 0.99 of the steps of first attempts on dev, "
        "and it flags ≤ 0.5% of valid steps (`docs/reviser.md`). A wrong check "
        "of a valid step sends a right attempt down a wrong path; a check that misses a slip keeps "
        "a wrong attempt (that chain then stops).\n"
        "- Training takes 40 min on 2 cores, over the ~30 min a generator's recipe is meant to take: 27 "
        "min for the solve and revise stages, 13 for the check stage (2,000 check steps, 6.7 min, "
        "give dev chains of 0.36 → 0.72 / 0.27 → 0.65 / 0.18 → 0.26 instead of 0.35 → 0.90 / "
        "0.28 → 0.86 / 0.19 → 0.74).\n"
        "- Level 5 (7 operations) is one operation beyond every training question; its pass@1 "
        "(0.000, coverage@16 0.000) measures that as much as the model's arithmetic, and leaves "
        "the PRM no right sample there to rank (its AUROC is undefined)."),
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
        "- **Its body is generator-large's**, so scoring costs ~23× the small generator's FLOPs per "
        "token (19.6M matmul parameters vs 0.87M, all counted in the FLOPs account). The policy "
        "weighs that cost (`docs/routing.md`).\n"
        "- It knows what generator-large knows and no more: a slip that generator-large would make "
        "too scores as right.\n"
        "- vLLM must serve it with the generator's tokenizer (`--tokenizer models/embedded/"
        "checkpoints/generator-small`, as `models/embedded/serving.py` does): for a qwen2 config "
        "transformers loads this tokenizer as `Qwen2Tokenizer`, which drops every space and "
        "newline.\n"
        "- Level 5 (7 operations) is beyond every training question of both generators; there the "
        "score mostly says that the question is hard."),
}

BUILT = {
    "prm": (
        "A verifier must know more than the generator it checks, and here what it needs is how sure "
        "a stronger model is of each digit a solution wrote. So the PRM is built on "
        "generator-large's body (`models/embedded/prm_model.py`), and only its score head is "
        "trained:\n\n"
        "1. The body is generator-large's, unchanged, in a residual stream one head wider (the body "
        "neither reads nor writes the extra channels; the embedding puts tiny one-hots of the "
        "digits and of the newline there). The step tag takes the newline's place and embedding, so "
        "the body reads the text exactly as the generator wrote it.\n"
        "2. A look-back layer: one head attends to the previous position (content-free q/k "
        "biases on the fastest RoPE planes) and copies its ten digit logits (generator-large's LM "
        "head rows); another writes a constant that dominates every later RMSNorm, so the layers "
        "above read their channels linearly.\n"
        "3. A badness layer: one head finds the question's newline; the MLP computes, for each digit "
        "written after it, `sum_j silu(4 (z_j - z_w + 2)) / 4` over the other digits j (0 when "
        "generator-large was sure of the written digit w, growing as it preferred another).\n"
        "4. A pool layer: each position attends to all before it with weight `exp(10 badness)`, a "
        "soft maximum: a solution is as wrong as its worst digit.\n"
        "5. The score head `p_good = sigmoid(gamma (delta - pooled))`, fitted by binary "
        "cross-entropy on Math-Shepherd soft labels (below).\n\n"
        "`tests/test_prm_model.py` checks that the body reproduces generator-large's states, that "
        "every tag score equals this formula computed from the generator's logits, and that vLLM "
        "serves the shipped checkpoint with the same scores.\n\n"
        "How we got here (dev, 40 questions per level × 16 samples of generator-small, levels 2–4; "
        "within-question AUROC = AUROC of scores centred on their question's mean, the ranking "
        "best-of-N needs):\n"
        "- Trained PRMs did not learn it. From the small generator's body, with Math-Shepherd "
        "labels, near misses, a ranking loss, extra layers, exact verification labels, dense "
        "per-digit targets: within-question AUROC 0.38–0.70, best-of-16 at or below majority. "
        "From generator-large's body with the look-back layer built and the rest trained (300–800 "
        "steps; the tag still inserted before the newline, see below): 0.50–0.65.\n"
        "- The signal is the generator's own probability of each digit it wrote, read at the "
        "position before the digit. Generator-small's: within-question 0.78 / 0.76 / 0.74, but "
        "best-of-16 by it only ties majority (0.60 / 0.475 / 0.30 vs 0.575 / 0.475 / 0.30): its "
        "confidence is what majority voting already counts. Generator-large's: 0.886 / 0.841 / "
        "0.772, best-of-16 0.675 / 0.575 / 0.35.\n"
        "- A step tag *inserted* before each newline shifted the body's positions and cost much of "
        "that (0.775 / 0.677 / 0.608, best-of-16 below majority); in the newline's place it costs "
        "nothing.\n"
        "- The built PRM, saved in bf16 and reloaded, before the head fit: within-question 0.895 / "
        "0.832 / 0.772, best-of-16 0.650 / 0.600 / 0.350 vs majority 0.575 / 0.475 / 0.300; AUROC "
        "across a level 0.90."),
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
    how = ("check and repair, as the `revisions` strategy runs them for this generator: each "
           "revision checks the last attempt step by step (greedy), cuts it at the first failed "
           "check, writes the check's result there and goes on; an attempt whose checks all pass is "
           "kept" if small.get("revision_mode") == "check_repair" else "through the revise prompt")
    lines.append(f"Sequential revisions ({small['revision_chains_per_question']} chains of 4 per "
                 f"question, T=0.8; {how}), pass@1 of each attempt:\n")
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


def reproduced(name: str, checkpoint: Path, verdicts: Path = RESULTS / "reproduce.json") -> list[str]:
    """The fact line from the last ``make reproduce`` that rebuilt this checkpoint's weights."""
    facts = json.loads(verdicts.read_text())["checkpoints"].get(name) if verdicts.exists() else None
    # A verdict on other weights (the checkpoint was replaced since) says nothing about these.
    if facts is None or facts["shipped_sha256"] != weights_digest(checkpoint):
        return ["- reproduced: not yet measured for these weights (`make reproduce`)"]
    if facts["identical_weights"]:
        return [f"- reproduced: the training command above, re-run from scratch into another "
                f"directory (as `make reproduce` does), gave byte-identical weights (sha256 "
                f"{facts['rebuilt_sha256'][:12]}…) on the same kind of CPU; another CPU's float "
                f"kernels give other weights (an AVX-512 Xeon and an AMD EPYC without AVX-512 "
                f"differ)"]
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
        f"- parameters: {report['parameters']:,}; stored as {config.get('torch_dtype', 'bfloat16')} "
        "safetensors",
        f"- training command: `{COMMANDS[name]}` (CPU, 2 threads, seed {training['recipe']['seed']})",
        f"- training time: {report['seconds'] / 60:.1f} min ({phases})",
        f"- tokens seen in training: {report['tokens']:,} (pre-training tokens for the FLOPs-matched "
        "comparison)",
        f"- recipe: `{json.dumps(training['recipe'])}`" + (
            f"; the stage before it: `{json.dumps(training['before']['recipe'])}`"
            if "before" in training else ""),
    ]
    parts += reproduced(name, directory)
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
    if name in BUILT:
        parts += ["\n## How it is built, and why\n", BUILT[name]]
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
