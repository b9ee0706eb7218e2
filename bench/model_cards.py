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
    "prm": "ttc-serve train prm --generator models/embedded/checkpoints/generator-small "
           "--body models/embedded/checkpoints/generator-large",
}
ROLES = {
    "generator-small": "the embedded generator: solves (``question: ..``) and revises "
                       "(``.. attempt: .. revision:``) step-by-step arithmetic",
    "generator-large": "a ~14x larger generator, same recipe and data (solve only), for the paper's "
                       "FLOPs-matched comparison of test-time compute against model size",
    "prm": "the process reward model (Qwen2ForProcessRewardModel, the Qwen2.5-Math-PRM architecture):"
           " one [p_bad, p_good] per step tag `<step>`, which ends each step in the newline's place"
           " (`question: 3+4\\n3+4=7<step>answer: 7<step>`)",
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
        "  - session 8, from the shipped solve phase, on-policy contexts only (4 per question) with a "
        "wrong last attempt replaced by the correct solution (share 0.5): first attempt 0.38 / "
        "0.33 / 0.21 on levels 2 / 3 / 4, fourth 0.08 / 0.05 / 0.05; the same with share 0.6, twice "
        "the learning rate, three-quarter revise batches and 600 steps: 0.39 / 0.43 / 0.18, fourth "
        "0.27 / 0.19 / 0.16; that plus a quarter of copy-forcing examples (4-digit questions, beyond "
        "the model, whose context is their correct solution), one revision of each of 8 first "
        "attempts: 0.33 / 0.24 / 0.14 against first attempts 0.43 / 0.30 / 0.20, a right attempt "
        "kept right 0.46 / 0.42 / 0.37 of the time (shipped: 0.21 / 0.14 / 0.19).\n"
        "  - session 9, from scratch with revise examples in every solve step (`early_revise` 16 "
        "per 64 solve examples; each of 1–4 attempts the correct solution or a one-digit slip of it, "
        "carried on, even odds): no copy formed in 1,500 steps (dev NLL of the correct solution "
        "with it as the only attempt 3.76 vs 3.12 fresh, level 2). A pure copy curriculum forms one: "
        "from scratch on revise examples whose only attempt is the correct solution, that NLL falls "
        "120 → 18 nats between steps 150 and 250. With such a warm-up (`copy_warmup` 500, then the "
        "even-odds slips) the solve phase reads its attempts (a slipped attempt raises the NLL 2.6 "
        "→ 12 nats) but copies the slips and revises right attempts away (one revision of a right "
        "first attempt stays right 0.24 / 0.46 / 0.57; chains 0.34 → 0.08 / 0.33 → 0.08 / 0.16 → "
        "0.04). After its revise phase (on-policy contexts only, 500 steps; 74 min on this "
        "machine's 2 cores without AVX-512) the fall is far smaller, but still a fall: dev, 40 "
        "questions per level × 4 chains, attempt 1 → 4: 0.456 → 0.381 / 0.381 → 0.256 / 0.231 → "
        "0.156 (the shipped model on the same chains: 0.412 → 0.019 / 0.338 → 0.025 / 0.194 → "
        "0.025); a right attempt "
        "kept right 0.55 / 0.38 / 0.27 of the time, a wrong one fixed 0.18 / 0.21 / 0.08; the "
        "correct solution as the attempt still scores no better than none (2.12 vs 1.80 nats). "
        "So it reads its context but cannot tell a right attempt from a slipped one: it weighs "
        "them alike. Not shipped (`early_revise`, `copy_warmup` default 0).\n"
        "  - session 10, the layout. Read side by side, this model's revisions of right attempts "
        "lose their place in the question (after `-667+393=-274` they add `-274+393=129`) or flip "
        "a leading digit (`114+38=152` → `114+38=252`). With the attempts first and the solve "
        "prompt last (`revision_layout` `attempts_first`: a revision starts from a fresh "
        "solution's own context), dev chains, attempt 1 → 4, levels 2 / 3 / 4: on top of these "
        "weights (a 200-step pure-copy warm-up, then 400 steps of on-policy contexts, 4 per "
        "question), flat: 0.563 → 0.525 / 0.425 → 0.431 / 0.275 → 0.294; 300 more steps with "
        "synthetic witness contexts (each attempt right at odds 0.6, else one slip carried on): "
        "0.613 → 0.606 / 0.556 → 0.569 / 0.419 → 0.413. The copy probe shows both ignore their "
        "attempts (the correct solution as attempt scores as no attempt: 1.67 vs 1.70 nats). The "
        "whole recipe from scratch (`training.SMALL_ATTEMPTS_FIRST`: solve phase as here, then 600 "
        "revise steps, 200 of pure copies, then on-policy contexts with 4 pure copies a step; 55 "
        "min on that machine): 0.463 → 0.469 / 0.263 → 0.319 / 0.194 → 0.281.\n"
        "  - session 11, the same recipe retrained (`--size small-attempts-first`, 24 min on an "
        "AVX-512 Xeon: other float kernels, so other weights than session 10's AMD run) is flat: "
        "dev 0.419 → 0.400 / 0.344 → 0.287 / 0.269 → 0.269; **test** (120 questions per level × 4 "
        "chains) 0.338 → 0.325 / 0.354 → 0.329 / 0.252 → 0.202. Session 10's rise was one run's "
        "luck. Its first attempts beat this model's (test 0.317 / 0.279 / 0.148) and its chains no "
        "longer collapse, but it still does not read its attempts (copy probe: the correct "
        "solution as attempt 2.61 nats vs 2.52 fresh, level 2). Then three targets "
        "(`revise_target`, 8 samples per question, from the same solve phase), dev attempt 1 → 4: "
        "the correct solution only where the samples' plurality answer is right, 0.287 → 0.281 / "
        "0.300 → 0.225 / 0.244 → 0.250; the plurality answer's solution, right or wrong "
        "(self-consistency distillation), 0.319 → 0.244 / 0.269 → 0.237 / 0.206 → 0.175; the "
        "plurality of the attempts shown where two or more agree, else the correct solution (a "
        "majority vote in context), 0.331 → 0.325 / 0.319 → 0.294 / 0.219 → 0.294; that with its "
        "pure copies showing the question's digits as `?` (`revise_copy_occluded`: only the "
        "attempt tells the numbers, so copying is the whole loss), 0.344 → 0.269 / 0.325 → 0.312 "
        "/ 0.300 → 0.244; that plus 8 witness contexts a step (each attempt right at even odds, "
        "else one slip carried on), 0.331 → 0.294 / 0.281 → 0.294 / 0.237 → 0.237. None reads its "
        "attempts on the task's own questions (the correct "
        "solution as attempt scores 3.31 nats vs 3.07 fresh at level 2 even after the occluded "
        "copies): a model that can already compute the answer keeps computing it. "
        "Why flat, our reading: where the context is the model's own samples and the target is "
        "the truth, the samples say nothing the model does not already believe, so the "
        "cross-entropy optimum ignores them; and no target helps a model that does not look.\n"
        "  - session 12, from the same solve phase, dev attempt 1 → 4: the witnesses' slips only "
        "in a result's leading digit (`witness_leading_slips`, on top of the last: an attempt "
        "shows the lower digits whose carries decide the leading one, which the model writes "
        "first), 0.306 → 0.269 / 0.250 → 0.300 / 0.212 → 0.212. The solve form samples far below "
        "its mode (80 dev questions per level: greedy 0.525 / 0.450 / 0.463, T = 0.8 0.421 / "
        "0.321 / 0.306, majority of 3 at T = 0.8 0.450 / 0.358 / 0.367), so a revise form trained "
        "twice as sharp as calibrated (`revise_sharpness` 2: its loss sees the logits halved; at "
        "T = 0.8 it draws as the calibrated model would at 0.4) had room: 0.481 → 0.400 / 0.250 → "
        "0.275 / 0.338 → 0.256. Sharpened, a revision copies its attempt more (one revision "
        "verbatim 0.51 / 0.36 / 0.29 of the time, a right attempt kept right 0.89 / 0.67 / 0.71) "
        "and so keeps the attempt's slips as firmly as its right digits. With the majority vote "
        "in context as its target too: 0.381 → 0.319 / 0.275 → 0.281 / 0.238 → 0.231. At 160 "
        "chains per level a dev figure's standard error is ~0.04: all of these are flat.\n"
        "  **Why, measured: the revise form does not read its context.** With the correct solution "
        "as the only attempt, its negative log-likelihood of that same solution is no lower than "
        "with no attempt at all (dev level 2, six questions, nats per solution with it / without: "
        "4.4 / 3.3, 2.8 / 2.7, 2.1 / 1.9 in the three variants, shipped 7.0 / 2.5; a copy would be "
        "near 0); only the copy-forcing run learned a partial copy, on the "
        "4-digit questions it was forced on (28 → 6.8 nats), not on the task's own. A revision "
        "therefore cannot keep what an attempt got right, and re-solving in a longer, less familiar "
        "context is worse than a fresh attempt.\n"
        "  Our reading (not a measurement): a reviser can only judge an attempt with what it "
        "knows, and what tells this model's right samples from its wrong ones is a stronger "
        "model's confidence (the PRM needed generator-large's body for it, its card); a context it "
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
        "- **Its body is generator-large's**, so scoring costs ~23× the small generator's FLOPs per "
        "token (19.6M matmul parameters vs 0.87M, all counted in the FLOPs account). The policy "
        "weighs that cost (`docs/routing.md`).\n"
        "- It knows what generator-large knows and no more: a slip that generator-large would make "
        "too scores as right.\n"
        "- vLLM must serve it with the generator's tokenizer (`--tokenizer models/embedded/"
        "checkpoints/generator-small`, as `models/embedded/serving.py` does): for a qwen2 config "
        "transformers loads this tokenizer as `Qwen2Tokenizer`, which drops every space and "
        "newline. Every PRM figure measured before session 7 went through that bug.\n"
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
                f"{facts['rebuilt_sha256'][:12]}…) on the same kind of CPU; another CPU's float "
                f"kernels give other weights (seen in session 11: an AVX-512 Xeon against an AMD "
                f"EPYC without AVX-512)"]
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
