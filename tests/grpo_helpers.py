"""Pieces the GRPO tests share: tiny image datasets, a reward with spread, a vision-row counter, a one-step trainer."""

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


def two_question_dataset(n: int = 2, *, with_images: bool = True):
    """``n`` prompts alternating two questions, each with its own random 112x112 image (or none); solution 3."""
    import numpy as np
    from datasets import Dataset
    from PIL import Image

    rng = np.random.default_rng(0)
    texts = ["How many dots are in the image?", "Count the people."]
    head = [{"type": "image"}] if with_images else []
    columns = {
        "prompt": [
            [{"role": "user", "content": [*head, {"type": "text", "text": texts[i % 2]}]}] for i in range(n)
        ],
        "solution": [3] * n,
    }
    if with_images:
        columns["image"] = [
            Image.fromarray(rng.integers(0, 255, (112, 112, 3), dtype=np.uint8)) for _ in range(n)
        ]
    return Dataset.from_dict(columns)


def one_step_trainer(
    cls, model_dir, tmp_path, dataset, *, generations: int = 4, lora=False, freeze_vision=False, **config
):
    """A ``cls`` trainer (stock ``trl.GRPOTrainer`` or ``GroupSharedGRPOTrainer``) for one fp32 CPU step over the
    whole of ``dataset``, ``generations`` completions per prompt, rewarded by :func:`length_reward`; ``config``
    overrides the GRPOConfig fields. Seeded, so two trainers of different classes start from the same weights."""
    from transformers import set_seed

    from crowdvlm.modeling import load_model_and_processor

    set_seed(0)  # LoRA's A matrices are drawn at wrap time
    model, processor = load_model_and_processor(
        model_dir,
        dtype="float32",
        lora={"r": 4, "alpha": 8, "dropout": 0.0} if lora else None,
        freeze_vision=freeze_vision,
    )
    # TRL pads prompt_ids left but takes mm_token_type_ids from the processor's padding side (trl #5785): with
    # prompts of different lengths and a right-padding processor stock TRL misplaces image positions, so the
    # comparison is made where stock TRL is right (the packed prompts read placeholders off the tokens).
    processor.tokenizer.padding_side = "left"
    args = cpu_grpo_config(
        tmp_path / cls.__name__,
        **{
            "per_device_train_batch_size": len(dataset) * generations,
            "num_generations": generations,
            "learning_rate": 1e-3,
            "data_seed": 0,
            **config,
        },
    )
    return cls(
        model=model,
        reward_funcs=[length_reward],
        args=args,
        train_dataset=dataset,
        processing_class=processor,
    )
