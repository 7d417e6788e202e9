"""GroupSharedGRPOTrainer and stock trl.GRPOTrainer set up alike on the tiny Qwen2.5-VL, and one step's rows; the
set-up of the multi-process sharing tests (DDP, ZeRO-3), which run their own file as each process's script."""

from __future__ import annotations

import os
from pathlib import Path

from grpo_helpers import cpu_grpo_config, length_reward_trainer, one_step_trainer, two_question_dataset

G = 4  # completions per prompt

PROMPTS = 2  # distinct prompts (images) per batch


def group_trainer(cls, model_dir, tmp_path, **config):
    return one_step_trainer(cls, model_dir, tmp_path, two_question_dataset(PROMPTS), generations=G, **config)


def generation_batch(trainer):
    """The rows RepeatSampler gives one step: each dataset row G times in a row."""
    dataset = trainer.train_dataset
    return [dataset[i] for i in range(PROMPTS) for _ in range(G)]


def multiprocess_config(output_dir, **overrides):
    """The multi-process sharing tests' ``GRPOConfig``: one prompt of G rows per process and step, plain SGD at a
    large rate (a step visibly moves every trained weight), no progress bars, the rest
    :func:`grpo_helpers.cpu_grpo_config`'s; ``overrides`` win."""
    settings = dict(
        per_device_train_batch_size=G, num_generations=G, optim="sgd", learning_rate=0.5, disable_tqdm=True
    )
    return cpu_grpo_config(output_dir, **{**settings, **overrides})


def multiprocess_trainer(which: str, model_dir, config, dataset):
    """``GroupSharedGRPOTrainer`` (``which`` "shared") or stock ``trl.GRPOTrainer`` on the fp32 tiny model from
    ``model_dir``, seeded alike and rewarded by :func:`grpo_helpers.length_reward`. Build ``config`` first: under
    ZeRO-3 it switches on ``deepspeed.zero.Init``, so the model loads already partitioned."""
    from transformers import set_seed
    from trl import GRPOTrainer

    from crowdvlm.modeling import load_model_and_processor
    from crowdvlm.train.sharing.trainer import GroupSharedGRPOTrainer

    set_seed(0)
    model, processor = load_model_and_processor(model_dir, dtype="float32")
    cls = GroupSharedGRPOTrainer if which == "shared" else GRPOTrainer
    return length_reward_trainer(cls, model, processor, config, dataset)


def pythonpath_with_tests() -> str:
    """PYTHONPATH for a test file run as a script: tests/ first, so it imports the helpers as pytest does."""
    tests = str(Path(__file__).resolve().parent)
    return os.pathsep.join(p for p in (tests, os.environ.get("PYTHONPATH", "")) if p)
