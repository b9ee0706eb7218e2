"""The FLOPs cost model (``models/cost.py``) against torch's own FLOP counter on the HF models.

For each model and context length: one token decoded at that context (what a generated token is
charged), and a prompt of that length computed at once (what a prompt or a PRM input is charged).
torch's counter sees the attention compute every query against every key; a causal model's
kernels (vLLM's among them) compute only the keys at or before each query, so its attention count
is taken at the causal share, ``(s + 1) / 2s`` of the full square. Models are built on the meta
device from their configs: counting needs shapes, not weights. ``python -m bench.flops_check``
writes ``bench/results/flops_check.json``; ``tests/test_flops.py`` holds every ratio within 5%.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from ttc_serve.app.settings import EMBEDDED_DIR
from ttc_serve.models.cost import FlopsModel

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "flops_check.json"
CONFIGS = {
    "SmolLM2-135M-Instruct": ROOT / "tests" / "data" / "smollm2-135m-instruct.config.json",
    "generator-small": EMBEDDED_DIR / "generator-small" / "config.json",
    "generator-large": EMBEDDED_DIR / "generator-large" / "config.json",
    "prm": EMBEDDED_DIR / "prm" / "config.json",
}
CONTEXTS = (16, 512, 2048)
_HF_ONLY = ("architectures", "transformers_version", "_model_name_or_path", "dtype", "torch_dtype")


def _model(config: dict[str, Any]) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config

    from ttc_serve.training.prm_model import ProcessRewardModel

    fields = {k: v for k, v in config.items() if k not in _HF_ONLY}
    with torch.device("meta"):
        if "ProcessRewardModel" in str(config.get("architectures")):
            hf = Qwen2Config(**fields)
            hf._attn_implementation = "sdpa"
            return ProcessRewardModel(hf)
        llama = LlamaConfig(**fields)
        llama._attn_implementation = "sdpa"
        return LlamaForCausalLM(llama)


def _counted(forward: Any, ids: torch.Tensor, **kwargs: Any) -> tuple[float, float, Any]:
    """(all FLOPs, the attention kernel's share, the forward's output)."""
    with FlopCounterMode(display=False) as counter:
        out = forward(input_ids=ids, **kwargs)
    # QK^T and AV: the fused kernel where torch dispatches one, else batched matmuls (the weight
    # matmuls are plain mm/addmm)
    attention = sum(v for op, v in counter.get_flop_counts()["Global"].items()
                    if "scaled_dot_product" in str(op) or str(op) == "aten.bmm")
    return float(counter.get_total_flops()), float(attention), out


def compare(name: str, config_path: Path, context: int) -> dict[str, Any]:
    config = json.loads(config_path.read_text())
    cost = FlopsModel.from_hf_config(config)
    model = _model(config)
    ids = torch.zeros((1, context), dtype=torch.long, device="meta")
    is_prm = "ProcessRewardModel" in str(config.get("architectures"))
    if is_prm:
        def prm(input_ids: torch.Tensor) -> torch.Tensor:  # body, then the score head at every token
            return model.score(model.model(input_ids=input_ids).last_hidden_state)  # type: ignore[operator]

        total, attention, _ = _counted(prm, ids)
    else:
        total, attention, out = _counted(model, ids, use_cache=True)
    causal = total - attention + attention * (context + 1) / (2 * context)
    row: dict[str, Any] = {"model": name, "context": context, "prompt_ours": cost.span(0, context),
                           "prompt_torch_causal": causal}
    row["prompt_ratio"] = row["prompt_ours"] / causal
    if not is_prm:  # a PRM only reads prompts
        step = torch.zeros((1, 1), dtype=torch.long, device="meta")
        decode, _, _ = _counted(model, step, past_key_values=out.past_key_values, use_cache=True)
        row.update(decode_ours=cost.span(context, context + 1), decode_torch=decode,
                   decode_ratio=cost.span(context, context + 1) / decode)
    return row


def rows() -> list[dict[str, Any]]:
    out = []
    for name, path in CONFIGS.items():
        limit = int(json.loads(path.read_text()).get("max_position_embeddings", max(CONTEXTS)))
        out += [compare(name, path, c) for c in CONTEXTS if c < limit]
    return out


def markdown(table: list[dict[str, Any]]) -> str:
    lines = ["| model | context | decode: ours / torch | prompt: ours / torch (causal) |",
             "|---|---|---|---|"]
    for r in table:
        decode = f"{r['decode_ratio']:.4f}" if "decode_ratio" in r else "– (reads prompts only)"
        lines.append(f"| {r['model']} | {r['context']} | {decode} | {r['prompt_ratio']:.4f} |")
    return "\n".join(lines)


def main() -> None:
    table = rows()
    RESULTS.write_text(json.dumps(table, indent=1) + "\n")
    print(markdown(table))


if __name__ == "__main__":
    main()
