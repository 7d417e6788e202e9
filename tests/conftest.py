"""Shared fixtures. The tiny random-weight Qwen2.5-VL is built once per test session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny Qwen2.5-VL saved in Hugging Face format (config, weights, tokenizer, processor)."""
    from crowdvlm.modeling.tiny import build_tiny_model

    out = tmp_path_factory.mktemp("tiny-qwen2.5-vl")
    build_tiny_model(out, seed=0)
    return out
