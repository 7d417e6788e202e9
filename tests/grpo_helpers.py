"""Pieces the GRPO tests share: tiny image datasets, a reward with spread, a vision-row counter, a one-step
trainer, and the checks of GroupSharedGRPOTrainer's log-prob passes against TRL's own per-row method."""

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


def colocated_vllm_config(output_dir, **overrides):
    """:func:`cpu_grpo_config` with vLLM colocated in the process, no KL term (no reference model) and no
    progress bars; ``overrides`` win."""
    settings = dict(use_vllm=True, vllm_mode="colocate", beta=0.0, disable_tqdm=True)
    return cpu_grpo_config(output_dir, **{**settings, **overrides})


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
    cls,
    model_dir,
    tmp_path,
    dataset,
    *,
    generations: int = 4,
    lora=False,
    lora_targets=None,
    freeze_vision=False,
    **config,
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
        lora={"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": lora_targets} if lora else None,
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
    return length_reward_trainer(cls, model, processor, args, dataset)


def length_reward_trainer(cls, model, processor, config, dataset):
    """A ``cls`` trainer (stock ``trl.GRPOTrainer`` or ``GroupSharedGRPOTrainer``) of ``model`` on ``dataset``,
    rewarded by :func:`length_reward`."""
    return cls(
        model=model,
        reward_funcs=[length_reward],
        args=config,
        train_dataset=dataset,
        processing_class=processor,
    )


def stock_logps(trainer, model, *args, **kwargs):
    """TRL 1.16.0's own per-row method, run on the same trainer."""
    import trl

    return trl.GRPOTrainer._get_per_token_logps_and_entropies(trainer, model, *args, **kwargs)


def logp_inputs(batch, **extra):
    """The keyword arguments of ``_get_per_token_logps_and_entropies`` for a scored batch."""
    import torch

    return dict(
        input_ids=torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1),
        attention_mask=torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1),
        logits_to_keep=batch["completion_ids"].size(1),
        pixel_values=batch["pixel_values"],
        image_grid_thw=batch["image_grid_thw"],
        num_images=batch["num_images"],
        mm_token_type_ids=batch["mm_token_type_ids"],
        **extra,
    )


def scored_batch(trainer, rows: list[dict]):
    """One generation round on ``rows`` (RepeatSampler's order), its rows shuffled as TRL shuffles them."""
    import torch
    from trl.trainer.utils import (
        shuffle_sequence_dict,
        split_pixel_values_by_grid,
        unsplit_pixel_values_by_grid,
    )

    trainer.current_gradient_accumulation_steps = 1  # set by the training loop, which these tests bypass
    trainer.model.train()
    torch.manual_seed(0)
    batch = trainer._generate_and_score_completions(rows)
    return unsplit_pixel_values_by_grid(shuffle_sequence_dict(split_pixel_values_by_grid(batch)))


class LanguageModelTokens:
    """Shapes of the inputs the language model gets (a forward hook), split by grad mode."""

    def __init__(self, model):
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.calls: dict[str, list[tuple[int, int]]] = {"grad": [], "no_grad": []}
        self._handle = base.model.language_model.register_forward_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs, output):
        import torch

        embeds = kwargs["inputs_embeds"]
        self.calls["grad" if torch.is_grad_enabled() else "no_grad"].append(tuple(embeds.shape[:2]))

    def tokens(self, mode: str) -> int:
        return sum(rows * length for rows, length in self.calls[mode])

    def close(self):
        self._handle.remove()


def loss_and_grads(trainer, batch, stock: bool):
    """The GRPO loss and every parameter's gradient, through our method or TRL's own per-row one."""
    trainer.model.zero_grad()
    if stock:
        trainer._get_per_token_logps_and_entropies = lambda *a, **k: stock_logps(trainer, *a, **k)
    try:
        loss = trainer._compute_loss(trainer.model, batch)
        loss.backward()
    finally:
        vars(trainer).pop("_get_per_token_logps_and_entropies", None)
    grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
    trainer.model.zero_grad()
    return loss.detach(), grads


def assert_logps_match_stock(trainer, batch) -> None:
    """An old-policy pass (no grad) in chunks of 3 rows, so groups span chunks: log-probs and entropies equal
    TRL's own per-row method's, with no sharing fallback."""
    import torch

    trainer.sharing_fallbacks.clear()
    trainer.fallback_reasons.clear()
    kwargs = logp_inputs(batch, compute_entropy=True, batch_size=3)
    with torch.no_grad():
        ours = trainer._get_per_token_logps_and_entropies(trainer.model, **kwargs)
        stock = stock_logps(trainer, trainer.model, **kwargs)
    torch.testing.assert_close(ours[0], stock[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours[1], stock[1], rtol=1e-5, atol=1e-5)
    assert trainer.sharing_fallbacks == {}


def assert_loss_and_grads_match_stock(trainer, batch) -> dict:
    """The training pass with grad, old-policy log-probs set apart from the policy's (importance ratios away
    from 1, so clipping applies): the loss and every parameter's gradient equal TRL's per-row ones.

    Returns:
        The stock gradients (name -> tensor).
    """
    import torch

    with torch.no_grad():
        logps = stock_logps(trainer, trainer.model, **logp_inputs(batch))[0]
    noise = torch.randn(logps.shape, generator=torch.Generator().manual_seed(0))
    batch = dict(batch, old_per_token_logps=logps + 0.3 * noise * batch["completion_mask"])
    trainer.sharing_fallbacks.clear()
    trainer.fallback_reasons.clear()
    loss_ours, grads_ours = loss_and_grads(trainer, batch, stock=False)
    loss_stock, grads_stock = loss_and_grads(trainer, batch, stock=True)
    assert trainer.sharing_fallbacks == {}
    assert loss_stock.abs() > 1e-3
    torch.testing.assert_close(loss_ours, loss_stock, rtol=1e-5, atol=1e-7)
    assert grads_ours.keys() == grads_stock.keys()
    assert sum(g.abs().sum() for g in grads_stock.values()) > 0
    for name in grads_stock:
        torch.testing.assert_close(grads_ours[name], grads_stock[name], rtol=1e-4, atol=1e-6, msg=name)
    return grads_stock
