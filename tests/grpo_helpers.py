"""Pieces the multi-process GRPO tests share: a tiny image dataset, a reward with spread, a vision-row counter."""

from __future__ import annotations


def random_image_dataset(n: int = 4, size: int = 112):
    """``n`` prompts, each with its own random ``size`` x ``size`` image (columns: prompt, image, solution)."""
    import numpy as np
    from datasets import Dataset
    from PIL import Image

    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)) for _ in range(n)]
    prompt = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many dots?"}]}]
    return Dataset.from_dict({"prompt": [prompt] * n, "image": images, "solution": [3] * n})


def length_reward(completions, **kwargs):
    """Varies with the sampled text, so a random model's groups have non-zero advantages."""
    return [float(len(c[0]["content"]) % 7) for c in completions]


def count_vision_rows(*modules) -> dict[str, int]:
    """Patch rows each module's forward sees, split by whether grad was on; the dict fills as they run."""
    import torch

    rows = {"grad": 0, "no_grad": 0}

    def count(module, inputs, output):
        rows["grad" if torch.is_grad_enabled() else "no_grad"] += inputs[0].shape[0]

    for module in modules:
        module.register_forward_hook(count)
    return rows


def cpu_grpo_config(output_dir, **overrides):
    """A one-step ``GRPOConfig`` for the tiny model on CPU: no saving, no reporting, seed 0; ``overrides`` win."""
    from trl import GRPOConfig

    args = dict(
        output_dir=str(output_dir),
        max_completion_length=8,
        beta=0.04,
        max_steps=1,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        bf16=False,
        seed=0,
    )
    return GRPOConfig(**{**args, **overrides})
