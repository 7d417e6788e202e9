"""Shared fixtures. The tiny random-weight models (Qwen2.5-VL, and the other families on demand) are built once per
test session."""

from __future__ import annotations

import importlib.util
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


VLLM_MISSING = (
    "vLLM is not installed in this environment; `make test-vllm` runs these tests in the one "
    "`make setup-vllm` builds (.venv-vllm)"
)


def pytest_collection_modifyitems(config, items):
    """Tests marked ``vllm`` are skipped, with the reason, where vLLM cannot be imported."""
    if importlib.util.find_spec("vllm") is not None:
        return
    skip = pytest.mark.skip(reason=VLLM_MISSING)
    for item in items:
        if "vllm" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_vllm_model_dir(tmp_path_factory):
    """A tiny Qwen2.5-VL whose head size vLLM's CPU attention accepts (hidden 128: head_dim 32)."""
    from crowdvlm.modeling.tiny import build_tiny_model

    out = tmp_path_factory.mktemp("tiny-qwen2.5-vl-h128")
    build_tiny_model(out, hidden_size=128, seed=0)
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny Qwen2.5-VL saved in Hugging Face format (config, weights, tokenizer, processor)."""
    from crowdvlm.modeling.tiny import build_tiny_model

    out = tmp_path_factory.mktemp("tiny-qwen2.5-vl")
    build_tiny_model(out, seed=0)
    return out


@pytest.fixture(scope="session")
def tiny_family_dir(tmp_path_factory):
    """``family -> folder`` of a tiny model of that family (qwen2_5_vl, qwen3_vl, qwen3_5), built on first use."""
    from crowdvlm.modeling.tiny import build_tiny_model

    built = {}

    def get(family: str):
        if family not in built:
            built[family] = build_tiny_model(tmp_path_factory.mktemp(f"tiny-{family}"), family=family, seed=0)
        return built[family]

    return get


def _dots(tmp_path_factory, n: int, counts: tuple[int, int], size: int):
    from crowdvlm.data.synth import generate

    out = tmp_path_factory.mktemp("synth-dots")
    return generate(
        out,
        n=n,
        style="dots",
        min_count=counts[0],
        max_count=counts[1],
        size=(size, size),
        seed=0,
        progress=False,
    )


@pytest.fixture(scope="session")
def dots_manifest(tmp_path_factory):
    """32 synthetic 112x112 images of 2 to 8 dots: the manifest the training runs learn from."""
    return _dots(tmp_path_factory, 32, (2, 8), 112)


@pytest.fixture(scope="session")
def small_dots_manifest(tmp_path_factory):
    """4 synthetic 56x56 images of 1 to 5 dots: enough for a recipe to be checked against."""
    return _dots(tmp_path_factory, 4, (1, 5), 56)


@pytest.fixture
def uploads(tmp_path):
    """A stand-in for gradio's upload folder (the only folder the app opens files from), and a folder beside
    it that requests must not reach."""
    root = tmp_path / "gradio"
    root.mkdir()
    (tmp_path / "private").mkdir()
    return root


@pytest.fixture(scope="session")
def benchmark_module():
    """``name -> module``: a script of benchmarks/ imported by path (benchmarks/ is not a package)."""
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "benchmarks"
    loaded = {}

    def get(name: str):
        if name not in loaded:
            spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", root / f"{name}.py")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            loaded[name] = module
        return loaded[name]

    return get


@pytest.fixture
def lock_waited():
    """An event set when a ``RunLock`` starts waiting for its folder's holder (its one warning): a test
    releases the holder only once the other side waits, with no sleep."""
    import logging
    import threading

    waiting = threading.Event()

    class _Seen(logging.Handler):
        def emit(self, record):
            if "waiting up to" in record.getMessage():
                waiting.set()

    seen, logger = _Seen(), logging.getLogger("crowdvlm.runlock")
    logger.addHandler(seen)
    yield waiting
    logger.removeHandler(seen)
