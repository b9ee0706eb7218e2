"""Launch specs for the shipped embedded models on the vLLM CPU engine."""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer

from ttc_serve.models.launcher import ServerSpec


def step_tag_id(prm_dir: Path, step_tag: str) -> int:
    token_id = Tokenizer.from_file(str(prm_dir / "tokenizer.json")).token_to_id(step_tag)
    if token_id is None:
        raise ValueError(f"the PRM tokenizer in {prm_dir} has no single token for {step_tag!r}")
    return int(token_id)


def embedded_specs(generator_dir: Path, prm_dir: Path, *, generator_name: str, prm_name: str,
                   step_tag: str, max_model_len: int, generator_cpu: str = "0",
                   prm_cpu: str = "1") -> tuple[ServerSpec, ServerSpec]:
    for directory in (generator_dir, prm_dir):
        if not (directory / "config.json").exists():
            raise FileNotFoundError(f"no checkpoint at {directory} (config.json missing)")
    generator = ServerSpec(model_dir=generator_dir, served_name=generator_name,
                           max_model_len=max_model_len, cpu_bind=generator_cpu,
                           extra_args=("--enable-prompt-tokens-details",))
    # For a qwen2 config, transformers 5.19 loads the PRM's tokenizer as Qwen2Tokenizer (whatever
    # tokenizer_config.json names), which drops every space and newline: the PRM then reads a text
    # it was never built for. The generator's directory holds the same tokenizer under a llama
    # config, which loads as is.
    if (prm_dir / "tokenizer.json").read_bytes() != (generator_dir / "tokenizer.json").read_bytes():
        raise ValueError(f"the PRM in {prm_dir} and the generator in {generator_dir} must share a "
                         "tokenizer (the embedded PRM is served with the generator's)")
    prm = ServerSpec(model_dir=prm_dir, served_name=prm_name, max_model_len=max_model_len,
                     pooling_step_tag_id=step_tag_id(prm_dir, step_tag), cpu_bind=prm_cpu,
                     extra_args=("--tokenizer", str(generator_dir)))
    return generator, prm
