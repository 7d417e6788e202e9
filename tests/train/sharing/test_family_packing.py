"""Packed prompts on every family that packs (train/sharing/families.py), against stock trl.GRPOTrainer.

Per family: per-token log-probs and entropies, the GRPO loss and every parameter's gradient (gradient
checkpointing on, with and without LoRA), the language model's input tokens per pass counted by a hook (prompt
once + G completions), and no packing fallback. One full step against stock TRL is in test_model_families.py.
"""

from __future__ import annotations

import pytest
import torch

from crowdvlm.train.sharing.families import FAMILIES as SHARING
from crowdvlm.train.sharing.trainer import GroupSharedGRPOTrainer
from grpo_helpers import (
    LanguageModelTokens,
    assert_logps_match_stock,
    assert_loss_and_grads_match_stock,
    logp_inputs,
    scored_batch,
)
from test_model_families import PROMPTS, G, _trainer

PACKING_FAMILIES = [f for f in ("qwen2_5_vl", "qwen3_vl", "qwen3_5") if SHARING[f].packing]


@pytest.fixture(
    scope="module",
    params=[(f, lora) for f in PACKING_FAMILIES for lora in (False, True)],
    ids=lambda p: f"{p[0]}-{'lora' if p[1] else 'full'}",
)
def family_batch(request, tiny_family_dir, tmp_path_factory):
    family, lora = request.param
    trainer = _trainer(
        GroupSharedGRPOTrainer,
        tiny_family_dir(family),
        tmp_path_factory.mktemp(family),
        lora=lora,
        gradient_checkpointing=True,
    )
    batch = scored_batch(trainer, [trainer.train_dataset[i] for i in range(PROMPTS) for _ in range(G)])
    return family, lora, trainer, batch


def test_logps_and_entropies_match_stock(family_batch):
    _, _, trainer, batch = family_batch
    assert_logps_match_stock(trainer, batch)
    assert trainer.fallback_reasons == {}


def test_loss_and_every_gradient_match_stock(family_batch):
    _, lora, trainer, batch = family_batch
    grads = assert_loss_and_grads_match_stock(trainer, batch)
    assert trainer.fallback_reasons == {}
    assert all("lora_" in name for name in grads) == lora


def test_language_model_runs_each_prompt_once_per_pass(family_batch):
    _, _, trainer, batch = family_batch
    kwargs = logp_inputs(batch)
    completion = batch["completion_ids"].size(1)
    counter = LanguageModelTokens(trainer.model)
    try:
        with torch.no_grad():  # reference / old-policy pass
            trainer._get_per_token_logps_and_entropies(trainer.model, **kwargs)
        trainer._get_per_token_logps_and_entropies(trainer.model, **kwargs)  # training pass
    finally:
        counter.close()
    # One packed row per prompt: the prompt (its last token moves into each completion segment) + G completions.
    prompt_lengths = batch["prompt_mask"].sum(1)
    packed_length = int(prompt_lengths.max()) - 1 + G * completion
    assert counter.calls == {"grad": [(PROMPTS, packed_length)], "no_grad": [(PROMPTS, packed_length)]}
    assert counter.tokens("grad") < batch["prompt_ids"].size(0) * (batch["prompt_ids"].size(1) + completion)
