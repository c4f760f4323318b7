# rpt-trl developer commands. On a CPU machine torch is installed first from the pinned CPU wheel, so that the
# package's `torch` requirement does not pull a multi-GB CUDA build. Override with `make TORCH="torch==X" ...`.
PYTHON ?= python
TORCH ?= torch==2.13.0
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: install install-dev demo test test-all lint format bench-reward bench-entropy

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

test-all: install-dev
	HF_HUB_OFFLINE=1 $(PYTHON) -m pytest -m "slow or not slow"

lint:
	ruff check . && ruff format --check .

format:
	ruff check --fix . && ruff format .

bench-reward:
	$(PYTHON) benchmarks/reward_throughput.py

bench-entropy:
	HF_HUB_OFFLINE=1 $(PYTHON) benchmarks/entropy_scorer.py
