"""The demo's starting point: a tiny Qwen2.5-VL that already counts roughly, shipped in ``demo/base/``.

It stands in for Qwen2.5-VL-Instruct, which counts roughly before any fine-tuning. It is built by
:func:`rebuild_base` (``crowdvlm demo --rebuild-base``): the tiny random-weight model of
:func:`crowdvlm.modeling.tiny.build_tiny_model`, then a short SFT (``crowdvlm/recipes/demo/base_sft.yaml``) on the
demo's in-domain styles with images that none of the demo's sets contain. It is stopped early on purpose: it
must answer in the ``<answer>N</answer>`` format yet miss the exact count most of the time, the regime in
which the 0/1 reward is sparse. ``base/base_recipe.json`` records how it was built and what the build measured.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from crowdvlm.atomic import atomic_write_json

__all__ = ["BASE_DATA", "BASE_DIR", "BASE_RECIPE", "check_base", "rebuild_base"]

logger = logging.getLogger(__name__)

BASE_DIR = Path(__file__).resolve().parent / "base"
RECIPE_FILE = "base_recipe.json"
BASE_RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "demo" / "base_sft.yaml"

#: The base's model seed and data (not training settings: those are the recipe's). The data seed is far
#: from the demo's own (crowdvlm/recipes/experiments/demo.yaml), so the base never sees a demo image.
BASE_DATA: dict[str, Any] = {"model_seed": 0, "data_seed": 7, "n_images": 8000}

# What a Hugging Face model folder needs; training leftovers (logs, optimizer state) are not shipped.
_MODEL_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "processor_config.json",
    "preprocessor_config.json",
    "video_preprocessor_config.json",
    "special_tokens_map.json",
)


def check_base(path: str | Path) -> dict[str, Any]:
    """Load the base once and describe it; raise a clear error if it is missing or does not load.

    Raises:
        FileNotFoundError: no model in ``path`` (the message says how to rebuild it).
        RuntimeError: the folder exists but the model or processor does not load.
    """
    from crowdvlm.modeling import count_parameters, load_model_and_processor

    path = Path(path)
    if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"{path} holds no base model (config.json + model.safetensors): run `crowdvlm demo --rebuild-base` "
            "or pass --base DIR"
        )
    try:
        model, processor = load_model_and_processor(path)
    except Exception as err:  # any load failure means the shipped files and the code disagree
        raise RuntimeError(
            f"the demo base in {path} does not load with this crowdvlm ({err}); "
            "rebuild it with `crowdvlm demo --rebuild-base`"
        ) from err
    info: dict[str, Any] = {"path": str(path), "parameters": count_parameters(model)}
    recipe = path / RECIPE_FILE
    if recipe.is_file():
        info["recipe"] = json.loads(recipe.read_text(encoding="utf-8"))
    del model, processor
    return info


def rebuild_base(
    out: str | Path,
    *,
    data: dict[str, Any] | None = None,
    overrides: dict[str, Any] | None = None,
    progress: bool = True,
) -> Path:
    """Build the base from scratch into ``out`` (replacing what is there) and return ``out``.

    Args:
        out: destination folder (the shipped one is :data:`BASE_DIR`).
        data: overrides of :data:`BASE_DATA` (tests use a few images).
        overrides: recipe keys to change (tests use ``max_steps=3``).
        progress: show progress bars.

    The styles, count range, image size and question are the demo's training set's
    (``crowdvlm/recipes/experiments/demo.yaml``); the base never sees the out-of-domain styles.
    """
    from crowdvlm.data.manifest import read_manifest, write_manifest
    from crowdvlm.data.synth import generate
    from crowdvlm.demo import DEMO_FILE
    from crowdvlm.experiments.spec import load_experiment
    from crowdvlm.modeling.tiny import build_tiny_model
    from crowdvlm.train.config import parse_job
    from crowdvlm.train.sft import run_sft

    demo = load_experiment(DEMO_FILE)
    train = demo.sets[demo.train_set]
    d = {**BASE_DATA, **(data or {})}
    out = Path(out)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="crowdvlm-base-") as tmp:
        tmp = Path(tmp)
        init = build_tiny_model(tmp / "init", seed=d["model_seed"])
        size = (demo.image_size, demo.image_size)
        manifest = generate(
            tmp / "data",
            d["n_images"],
            list(train.styles),
            train.counts[0],
            train.counts[1],
            size,
            d["data_seed"],
            progress=progress,
        )
        records = read_manifest(manifest, check_images=False)
        write_manifest([{**rec, "problem": demo.question} for rec in records], manifest)
        job = parse_job(
            "sft",
            recipe=BASE_RECIPE,
            **{
                **(overrides or {}),
                "model_name_or_path": str(init),
                "dataset": [str(manifest)],
                "output_dir": str(tmp / "sft"),
                "disable_tqdm": not progress,
            },
        )
        result = run_sft(job)
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        for name in _MODEL_FILES:
            if (tmp / "sft" / name).is_file():
                shutil.copy2(tmp / "sft" / name, out / name)
    record = {
        "recipe": "recipes/demo/base_sft.yaml",
        "overrides": overrides or {},
        "data": d,
        "styles": list(train.styles),
        "counts": list(train.counts),
        "image_size": demo.image_size,
        "prompt": {
            "question": demo.question,
            "template": job.script.prompt_template,
            "output": job.script.output_format,
        },
        "steps_done": result.global_step,
        "train_loss": result.metrics.get("train_loss"),
        "build_s": round(time.perf_counter() - start, 1),
        "command": "crowdvlm demo --rebuild-base",
    }
    atomic_write_json(out / RECIPE_FILE, record)
    logger.info("demo base rebuilt in %.0f s -> %s", record["build_s"], out)
    return out
