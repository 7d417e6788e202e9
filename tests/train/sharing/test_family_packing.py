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
from test_model_families import PROMPTS, G, _trainer
from test_shared_prefix import LanguageModelTokens, _logp_inputs, _loss_and_grads, _scored_batch, _stock_logps

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
    batch = _scored_batch(trainer)
    return family, lora, trainer, batch


def test_logps_and_entropies_match_stock(family_batch):
    _, _, trainer, batch = family_batch
    trainer.fallback_reasons.clear()
    kwargs = _logp_inputs(batch, compute_entropy=True, batch_size=3)  # chunks that split groups
    with torch.no_grad():
        ours = trainer._get_per_token_logps_and_entropies(trainer.model, **kwargs)
        stock = _stock_logps(trainer, trainer.model, **kwargs)
    torch.testing.assert_close(ours[0], stock[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours[1], stock[1], rtol=1e-5, atol=1e-5)
    assert trainer.fallback_reasons == {}


def test_loss_and_every_gradient_match_stock(family_batch):
    """The training pass with grad, importance ratios away from 1 (old-policy log-probs set apart)."""
    _, lora, trainer, batch = family_batch
    with torch.no_grad():
        logps = _stock_logps(trainer, trainer.model, **_logp_inputs(batch))[0]
    noise = torch.randn(logps.shape, generator=torch.Generator().manual_seed(0))
    batch = dict(batch, old_per_token_logps=logps + 0.3 * noise * batch["completion_mask"])
    trainer.fallback_reasons.clear()
    loss_ours, grads_ours = _loss_and_grads(trainer, batch, stock=False)
    loss_stock, grads_stock = _loss_and_grads(trainer, batch, stock=True)
    assert trainer.fallback_reasons == {}
    assert loss_stock.abs() > 1e-3
    torch.testing.assert_close(loss_ours, loss_stock, rtol=1e-5, atol=1e-7)
    assert grads_ours.keys() == grads_stock.keys()
    assert all("lora_" in name for name in grads_stock) == lora
    assert sum(g.abs().sum() for g in grads_stock.values()) > 0
    for name in grads_stock:
        torch.testing.assert_close(grads_ours[name], grads_stock[name], rtol=1e-4, atol=1e-6, msg=name)


def test_language_model_runs_each_prompt_once_per_pass(family_batch):
    _, _, trainer, batch = family_batch
    kwargs = _logp_inputs(batch)
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
