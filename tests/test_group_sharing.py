"""GroupSharedGRPOTrainer against stock trl.GRPOTrainer on the tiny Qwen2.5-VL: same numbers, fewer vision rows."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from crowdvlm.train.sharing import trainer as sharing_trainer
from crowdvlm.train.sharing.fallbacks import Fallback, FallbackReason
from crowdvlm.train.sharing.trainer import GroupSharedGRPOTrainer

G = 4  # completions per prompt
PROMPTS = 2  # distinct prompts (images) per batch
PATCHES = 64  # a 112x112 image at the tiny model's max_pixels: an 8x8 patch grid


def length_reward(completions, **kwargs) -> list[float]:
    """Dense shaping reward so that a random model still gets non-zero advantages."""
    return [float(len(c[0]["content"]) % 7) for c in completions]


def _dataset(n: int = PROMPTS):
    from datasets import Dataset

    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (112, 112, 3), dtype=np.uint8)) for _ in range(n)]
    texts = ["How many dots are in the image?", "Count the people."]
    prompts = [
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": texts[i % 2]}]}]
        for i in range(n)
    ]
    return Dataset.from_dict({"prompt": prompts, "image": images, "solution": [3] * n})


def _trainer(cls, model_dir, tmp_path, *, lora=False, lora_targets=None, freeze_vision=False, **config):
    from transformers import set_seed
    from trl import GRPOConfig

    from crowdvlm.modeling import load_model_and_processor

    set_seed(0)  # LoRA's A matrices are drawn at wrap time
    model, processor = load_model_and_processor(
        model_dir,
        dtype="float32",
        lora={"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": lora_targets} if lora else None,
        freeze_vision=freeze_vision,
    )
    # TRL pads prompt_ids left but takes mm_token_type_ids from the processor: stock TRL's per-row path places
    # shorter prompts' image positions right only when the processor pads left too (trl #5785).
    processor.tokenizer.padding_side = "left"
    args = dict(
        output_dir=str(tmp_path / cls.__name__),
        per_device_train_batch_size=PROMPTS * G,
        num_generations=G,
        max_completion_length=8,
        learning_rate=1e-3,
        beta=0.04,
        max_steps=1,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        bf16=False,
        seed=0,
        data_seed=0,
    )
    args.update(config)
    return cls(
        model=model,
        reward_funcs=[length_reward],
        args=GRPOConfig(**args),
        train_dataset=_dataset(),
        processing_class=processor,
    )


class VisionRows:
    """Counts the patch rows each vision tower encodes, split by grad mode (a forward hook on ``visual``)."""

    def __init__(self, **models):
        self.rows: dict[str, int] = {}
        self._handles = []
        for name, model in models.items():
            visual = next(m for n, m in model.named_modules() if n.endswith("visual"))
            self._handles.append(visual.register_forward_hook(self._hook(name)))

    def _hook(self, name):
        def hook(module, args, output):
            key = f"{name}/{'grad' if torch.is_grad_enabled() else 'no_grad'}"
            self.rows[key] = self.rows.get(key, 0) + args[0].shape[0]

        return hook

    def close(self):
        for handle in self._handles:
            handle.remove()


def _generation_batch(trainer):
    """The rows RepeatSampler gives one step: each dataset row G times in a row."""
    dataset = trainer.train_dataset
    return [dataset[i] for i in range(PROMPTS) for _ in range(G)]


@pytest.fixture(scope="module")
def shared(tiny_model_dir, tmp_path_factory):
    trainer = _trainer(GroupSharedGRPOTrainer, tiny_model_dir, tmp_path_factory.mktemp("shared"))
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop, which these tests bypass
    return trainer


@pytest.fixture(scope="module")
def scored_batch(shared):
    """One scored generation batch (completions, advantages, ref log-probs), rows shuffled as TRL shuffles them."""
    shared.model.train()
    torch.manual_seed(0)
    batch = shared._generate_and_score_completions(_generation_batch(shared))
    from trl.trainer.utils import (
        shuffle_sequence_dict,
        split_pixel_values_by_grid,
        unsplit_pixel_values_by_grid,
    )

    return unsplit_pixel_values_by_grid(shuffle_sequence_dict(split_pixel_values_by_grid(batch)))


def _loss_and_grads(trainer, inputs, share_vision: bool):
    trainer.share_vision = share_vision
    model = trainer.model
    model.zero_grad()
    loss = trainer._compute_loss(model, inputs)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    trainer.share_vision = True
    return loss.detach(), grads


def test_loss_and_gradients_match_stock_with_one_vision_pass(shared, scored_batch):
    counter = VisionRows(policy=shared.model)
    try:
        loss_shared, grads_shared = _loss_and_grads(shared, scored_batch, share_vision=True)
        rows_shared = dict(counter.rows)
        counter.rows.clear()
        loss_stock, grads_stock = _loss_and_grads(shared, scored_batch, share_vision=False)
        rows_stock = dict(counter.rows)
    finally:
        counter.close()

    # (the loss value itself is ~0 on a first step: ratio 1, group-centred advantages; its gradient is not)
    assert sum(g.abs().sum() for g in grads_stock.values()) > 0
    torch.testing.assert_close(loss_shared, loss_stock, rtol=1e-5, atol=1e-7)
    assert grads_shared.keys() == grads_stock.keys()
    assert any(n for n in grads_shared if ".visual." in n)  # the vision tower is trained and gets gradient
    for name in grads_stock:
        torch.testing.assert_close(grads_shared[name], grads_stock[name], rtol=1e-4, atol=1e-6, msg=name)
    assert rows_shared == {"policy/grad": PROMPTS * PATCHES}
    assert rows_stock == {"policy/grad": PROMPTS * G * PATCHES}


def test_no_grad_logps_match_stock_across_chunks(shared, scored_batch):
    """The reference / old-policy passes: chunked by 3 rows, so copies of one image span chunks."""
    b = scored_batch
    kwargs = dict(
        input_ids=torch.cat([b["prompt_ids"], b["completion_ids"]], dim=1),
        attention_mask=torch.cat([b["prompt_mask"], b["completion_mask"]], dim=1),
        logits_to_keep=b["completion_ids"].size(1),
        batch_size=3,
        pixel_values=b["pixel_values"],
        image_grid_thw=b["image_grid_thw"],
        num_images=b["num_images"],
        mm_token_type_ids=b["mm_token_type_ids"],
    )
    results = {}
    counter = VisionRows(ref=shared.ref_model)
    try:
        for share in (True, False):
            shared.share_vision = share
            with torch.no_grad():
                results[share] = shared._get_per_token_logps_and_entropies(shared.ref_model, **kwargs)[0]
            results[f"rows_{share}"] = counter.rows.pop("ref/no_grad")
    finally:
        shared.share_vision = True
        counter.close()
    torch.testing.assert_close(results[True], results[False], rtol=1e-5, atol=1e-6)
    assert (results["rows_True"], results["rows_False"]) == (PROMPTS * PATCHES, PROMPTS * G * PATCHES)


def test_shared_prefill_gives_stock_first_token_logits_and_samples(shared):
    from transformers import GenerationConfig

    from crowdvlm.train.sharing.prefill import generate_with_shared_prefix

    rows = _generation_batch(shared)
    convs = [
        [
            {
                "role": "user",
                "content": [{"type": "image", "image": r["image"]}, {"type": "text", "text": "n?"}],
            }
        ]
        for r in rows
    ]
    processor = shared.processing_class
    full = processor.apply_chat_template(
        convs, add_generation_prompt=True, tokenize=True, return_dict=True, padding=True, return_tensors="pt"
    )
    distinct = processor.apply_chat_template(
        convs[::G],
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        padding=True,
        return_tensors="pt",
    )
    config = GenerationConfig(
        max_new_tokens=6,
        do_sample=True,
        pad_token_id=processor.tokenizer.pad_token_id,
        disable_compile=True,
        return_dict_in_generate=True,
        output_logits=True,
    )
    model = shared.model.eval()
    try:
        torch.manual_seed(123)
        with torch.no_grad():
            stock = model.generate(**full, generation_config=config)
        torch.manual_seed(123)
        ours = generate_with_shared_prefix(
            model,
            config,
            distinct["input_ids"],
            distinct["attention_mask"],
            [i // G for i in range(PROMPTS * G)],
            token_inputs={"mm_token_type_ids": distinct["mm_token_type_ids"]},
            prefill_inputs={
                "pixel_values": distinct["pixel_values"],
                "image_grid_thw": distinct["image_grid_thw"],
            },
        )
    finally:
        model.train()
    torch.testing.assert_close(ours.logits[0], stock.logits[0], rtol=1e-5, atol=1e-5)
    assert torch.equal(ours.sequences, stock.sequences)


@pytest.mark.parametrize(
    ("config", "passes"),
    [
        # generation + reference model + training pass
        ({"beta": 0.04}, {"policy/no_grad": 1, "ref/no_grad": 1, "policy/grad": 1}),
        # generation + old-policy pass (generation reused over 2 iterations) + training pass
        ({"beta": 0.0, "num_iterations": 2}, {"policy/no_grad": 2, "policy/grad": 1}),
    ],
)
@pytest.mark.parametrize("cls_name", ["GroupSharedGRPOTrainer", "GRPOTrainer"])
def test_vision_rows_per_step_are_unique_images_times_passes(
    tiny_model_dir, tmp_path, cls_name, config, passes
):
    import trl

    cls = GroupSharedGRPOTrainer if cls_name == "GroupSharedGRPOTrainer" else trl.GRPOTrainer
    trainer = _trainer(cls, tiny_model_dir, tmp_path, **config)
    models = {"policy": trainer.model} | ({"ref": trainer.ref_model} if trainer.ref_model is not None else {})
    counter = VisionRows(**models)
    try:
        trainer.train()
    finally:
        counter.close()
    copies = 1 if cls is GroupSharedGRPOTrainer else G
    assert counter.rows == {key: n * PROMPTS * copies * PATCHES for key, n in passes.items()}
    assert getattr(trainer, "sharing_fallbacks", {}) == {}


def test_one_training_step_matches_stock(tiny_model_dir, tmp_path):
    """Same seed, one full step each: same completions, loss and updated weights.

    Plain SGD, so that the weight change is the gradient (Adam's first step, ~lr * sign(grad), would turn
    float noise in near-zero gradients into lr-sized differences).
    """
    import trl
    from transformers import set_seed

    trainers = {
        cls.__name__: _trainer(cls, tiny_model_dir, tmp_path, optim="sgd", learning_rate=1.0)
        for cls in (trl.GRPOTrainer, GroupSharedGRPOTrainer)
    }
    for trainer in trainers.values():
        set_seed(0)
        trainer.train()
    stock, ours = trainers["GRPOTrainer"], trainers["GroupSharedGRPOTrainer"]
    stock_log, our_log = stock.state.log_history[0], ours.state.log_history[0]
    for key in ("loss", "reward", "kl", "completions/mean_length", "grad_norm"):
        assert our_log[key] == pytest.approx(stock_log[key], rel=1e-4, abs=1e-6), key
    for (name, p_stock), (_, p_ours) in zip(
        stock.model.named_parameters(), ours.model.named_parameters(), strict=True
    ):
        torch.testing.assert_close(p_ours, p_stock, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("lora", [True, False], ids=["lora", "full"])
def test_frozen_vision_matches_stock(tiny_model_dir, tmp_path, lora):
    """Vision frozen, with LoRA on the language model (the reference is then the adapter-disabled policy) or
    full fine-tuning of the language model (a separate reference model)."""
    import trl
    from transformers import set_seed

    trainers = {
        cls.__name__: _trainer(cls, tiny_model_dir, tmp_path, lora=lora, freeze_vision=True, optim="sgd")
        for cls in (trl.GRPOTrainer, GroupSharedGRPOTrainer)
    }
    ours = trainers["GroupSharedGRPOTrainer"]
    before = {n: p.detach().clone() for n, p in ours.model.named_parameters()}
    counter = VisionRows(policy=ours.model)
    try:
        for trainer in trainers.values():
            set_seed(0)
            trainer.train()
    finally:
        counter.close()
    # generation (+ the reference pass with adapters off, under LoRA) without grad, the training pass with grad
    assert (ours.ref_model is None) == lora
    no_grad_passes = 2 if lora else 1
    assert counter.rows == {
        "policy/no_grad": no_grad_passes * PROMPTS * PATCHES,
        "policy/grad": PROMPTS * PATCHES,
    }
    changed = {n for n, p in ours.model.named_parameters() if not torch.equal(p, before[n])}
    assert changed
    assert not any(".visual." in n for n in changed)
    assert all("lora_" in n for n in changed) or not lora
    stock_log, our_log = (trainers[k].state.log_history[0] for k in ("GRPOTrainer", "GroupSharedGRPOTrainer"))
    for key in ("loss", "kl", "grad_norm"):
        assert our_log[key] == pytest.approx(stock_log[key], rel=1e-4, abs=1e-6), key


def test_falls_back_to_stock_once_with_a_warning(shared, scored_batch, monkeypatch, caplog):
    def unsupported(*args, **kwargs):
        return Fallback(
            FallbackReason.FEATURE_FIELDS,
            "get_image_features returns fields ['deepstack_features'] that are not repeated per image",
        )

    monkeypatch.setattr(sharing_trainer, "sharing_unsupported_reason", unsupported)
    shared.sharing_fallbacks.clear()
    with caplog.at_level(logging.WARNING, logger=sharing_trainer.__name__):
        loss_a, _ = _loss_and_grads(shared, scored_batch, share_vision=True)
        loss_b, _ = _loss_and_grads(shared, scored_batch, share_vision=True)
    monkeypatch.undo()
    loss_stock, _ = _loss_and_grads(shared, scored_batch, share_vision=False)
    torch.testing.assert_close(loss_a, loss_stock)
    torch.testing.assert_close(loss_b, loss_stock)
    assert len([r for r in caplog.records if "deepstack_features" in r.getMessage()]) == 1
    assert list(shared.sharing_fallbacks.values()) == [2]
    shared.sharing_fallbacks.clear()
