"""The demo's starting point: a tiny Qwen2.5-VL that already counts roughly, shipped in ``demo/base/``.

It stands in for Qwen2.5-VL-Instruct, which counts roughly before any fine-tuning. It is built by
:func:`rebuild_base` (``crowdvlm demo --rebuild-base``): the tiny random-weight model of
:func:`crowdvlm.modeling.tiny.build_tiny_model`, then a short SFT on the in-domain styles with images that
none of the demo's sets contain. It is stopped early on purpose: it must answer in the ``<answer>N</answer>``
format yet miss the exact count most of the time, the regime in which the 0/1 reward is sparse.
``BASE_RECIPE`` is the whole recipe; ``base/base_recipe.json`` records it with what the build measured.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from crowdvlm.demo.plan import DemoPlan

__all__ = ["BASE_DIR", "BASE_RECIPE", "check_base", "rebuild_base"]

logger = logging.getLogger(__name__)

BASE_DIR = Path(__file__).resolve().parent / "base"
RECIPE_FILE = "base_recipe.json"

#: How the shipped base is made (the model seed, the SFT data and schedule). The data seed is far from the
#: demo's own (``DemoPlan.data_seed``), so the base never sees a demo image.
BASE_RECIPE: dict[str, Any] = {
    "model_seed": 0,
    "data_seed": 7,
    "n_images": 8000,
    "steps": 2500,
    "batch_size": 16,
    "learning_rate": 3e-4,
}

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
        raise RuntimeError(f"the demo base in {path} does not load with this crowdvlm ({err}); "
                           "rebuild it with `crowdvlm demo --rebuild-base`") from err  # fmt: skip
    info: dict[str, Any] = {"path": str(path), "parameters": count_parameters(model)}
    recipe = path / RECIPE_FILE
    if recipe.is_file():
        info["recipe"] = json.loads(recipe.read_text(encoding="utf-8"))
    del model, processor
    return info


def rebuild_base(
    out: str | Path, plan: DemoPlan, *, recipe: dict[str, Any] | None = None, progress: bool = True
) -> Path:
    """Build the base from scratch into ``out`` (replacing what is there) and return ``out``.

    Args:
        out: destination folder (the shipped one is :data:`BASE_DIR`).
        plan: gives the in-domain styles, image size and count range (the base never sees the OOD style).
        recipe: overrides of :data:`BASE_RECIPE` (tests use a few steps).
        progress: show progress bars.
    """
    from crowdvlm.data.synth import generate
    from crowdvlm.demo.jobs import OUTPUT_FORMAT, PROMPT_TEMPLATE, set_question
    from crowdvlm.modeling.tiny import build_tiny_model
    from crowdvlm.train.config import parse_job
    from crowdvlm.train.sft import run_sft

    r = {**BASE_RECIPE, **(recipe or {})}
    out = Path(out)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="crowdvlm-base-") as tmp:
        tmp = Path(tmp)
        init = build_tiny_model(tmp / "init", seed=r["model_seed"])
        size = (plan.image_size, plan.image_size)
        manifest = generate(tmp / "data", r["n_images"], list(plan.styles), plan.train_counts[0],
                            plan.train_counts[1], size, r["data_seed"], progress=progress)  # fmt: skip
        set_question(manifest, plan.question)
        job = parse_job(
            "sft",
            model_name_or_path=str(init),
            dataset=[str(manifest)],
            output_dir=str(tmp / "sft"),
            prompt_template=PROMPT_TEMPLATE,
            output_format=OUTPUT_FORMAT,
            learning_rate=r["learning_rate"],
            lr_scheduler_type="constant",
            max_steps=r["steps"],
            per_device_train_batch_size=r["batch_size"],
            seed=r["model_seed"],
            logging_steps=50,
            save_strategy="no",
            report_to="none",
            use_cpu=True,
            bf16=False,
            max_length=None,
            disable_tqdm=not progress,
        )
        result = run_sft(job)
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        for name in _MODEL_FILES:
            if (tmp / "sft" / name).is_file():
                shutil.copy2(tmp / "sft" / name, out / name)
    record = {
        "recipe": r,
        "styles": list(plan.styles),
        "counts": list(plan.train_counts),
        "image_size": plan.image_size,
        "prompt": {"question": plan.question, "template": PROMPT_TEMPLATE, "output": OUTPUT_FORMAT},
        "steps_done": result.global_step,
        "train_loss": result.metrics.get("train_loss"),
        "build_s": round(time.perf_counter() - start, 1),
        "command": "crowdvlm demo --rebuild-base",
    }
    (out / RECIPE_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    logger.info("demo base rebuilt in %.0f s -> %s", record["build_s"], out)
    return out
