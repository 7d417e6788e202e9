# Quick start: `make demo` and `make test`. Each runs `setup` first, so either alone works on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Threads: tests and the demo are written for a 2-core machine; torch must not oversubscribe it.
export OMP_NUM_THREADS ?= 2
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup demo demo-quick test test-slow lint format bench gpu-check clean

setup: $(STAMP)

# DeepSpeed for the ZeRO-2/3 tests (2 CPU processes over gloo). Pinned; built against the torch installed just
# before it, hence --no-build-isolation (an isolated build would fetch a torch of its own). A pure-Python wheel.
DEEPSPEED := deepspeed==0.19.8

# Re-installs only when the package metadata or this file changes: `make setup` is near-instant otherwise.
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev,app]"
	$(BIN)/python -m pip install -q setuptools wheel
	$(BIN)/python -m pip install -q --no-build-isolation "$(DEEPSPEED)"
	touch $(STAMP)

demo: setup
	$(BIN)/crowdvlm demo

demo-quick: setup
	$(BIN)/crowdvlm demo --quick

test: setup
	$(BIN)/python -m pytest -q -m "not slow"

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: setup
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

bench: setup
	$(BIN)/python benchmarks/grpo_step.py

# On a CUDA machine: real architectures with random weights, nothing downloaded, 8 minutes at most
# (docs/speed.md). MODEL=qwen2_5_vl_7b | qwen3_vl_4b | qwen3_vl_8b | qwen3_5_9b for another one.
MODEL ?= qwen2_5_vl_3b
gpu-check: setup
	$(BIN)/python benchmarks/gpu_check.py --model $(MODEL)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache runs
