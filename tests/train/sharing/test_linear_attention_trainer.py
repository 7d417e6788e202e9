"""Qwen3.5 packed in GroupSharedGRPOTrainer: its Gated DeltaNet layers take the packed path (in the forward and
again in gradient checkpointing's recompute, switched on here as the training loop does) and the log-probs, loss
and every gradient equal stock TRL's, with LoRA on the linear-attention projections as the Qwen3.5 recipe sets
it. The checks every packing family shares (decoder tokens per pass, ...) are in test_family_packing.py."""

from __future__ import annotations

import pytest
import torch

from crowdvlm.train.sharing import linear_attention
from crowdvlm.train.sharing.trainer import GroupSharedGRPOTrainer
from test_group_sharing import _trainer
from test_shared_prefix import _logp_inputs, _loss_and_grads, _scored_batch, _stock_logps

# The Qwen3.5 recipe's LoRA targets: the linear-attention projections too.
QWEN3_5_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "in_proj_qkv", "in_proj_z", "out_proj"]


@pytest.fixture(scope="module", params=[False, True], ids=["full", "lora"])
def qwen3_5(request, tiny_family_dir, tmp_path_factory):
    trainer = _trainer(
        GroupSharedGRPOTrainer,
        tiny_family_dir("qwen3_5"),
        tmp_path_factory.mktemp("qwen3_5"),
        lora=request.param,
        lora_targets=QWEN3_5_LORA_TARGETS,
        gradient_checkpointing=True,
    )
    # The training loop turns checkpointing on (Trainer.train); these tests call the passes directly.
    trainer.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    assert any(getattr(m, "gradient_checkpointing", False) for m in trainer.model.modules())
    return trainer, _scored_batch(trainer)


@pytest.fixture
def packed_calls(monkeypatch):
    """Number of packed Gated DeltaNet forwards, by grad mode."""
    calls = {"grad": 0, "no_grad": 0}
    packed = linear_attention.packed_gated_delta_net

    def counting(*args, **kwargs):
        calls["grad" if torch.is_grad_enabled() else "no_grad"] += 1
        return packed(*args, **kwargs)

    monkeypatch.setattr(linear_attention, "packed_gated_delta_net", counting)
    return calls


def _linear_layers(trainer) -> int:
    return len(linear_attention.linear_attention_layers(trainer.model))


def test_logps_match_stock_with_each_linear_attention_layer_packed(qwen3_5, packed_calls):
    trainer, batch = qwen3_5
    trainer.sharing_fallbacks.clear()
    kwargs = _logp_inputs(batch, compute_entropy=True)
    with torch.no_grad():
        ours = trainer._get_per_token_logps_and_entropies(trainer.model, **kwargs)
        stock = _stock_logps(trainer, trainer.model, **kwargs)
    torch.testing.assert_close(ours[0], stock[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours[1], stock[1], rtol=1e-5, atol=1e-5)
    assert trainer.sharing_fallbacks == {}
    assert packed_calls["no_grad"] == _linear_layers(trainer) > 0


def test_loss_and_every_gradient_match_stock_through_the_checkpoint_recompute(qwen3_5, packed_calls):
    trainer, batch = qwen3_5
    with torch.no_grad():
        logps = _stock_logps(trainer, trainer.model, **_logp_inputs(batch))[0]
    noise = torch.randn(logps.shape, generator=torch.Generator().manual_seed(0))
    batch = dict(batch, old_per_token_logps=logps + 0.3 * noise * batch["completion_mask"])
    trainer.sharing_fallbacks.clear()
    loss_ours, grads_ours = _loss_and_grads(trainer, batch, stock=False)
    # Every linear-attention layer ran packed in the forward and again in the checkpointed recompute.
    assert packed_calls["grad"] == 2 * _linear_layers(trainer)
    loss_stock, grads_stock = _loss_and_grads(trainer, batch, stock=True)
    assert trainer.sharing_fallbacks == {}
    assert loss_stock.abs() > 1e-3
    torch.testing.assert_close(loss_ours, loss_stock, rtol=1e-5, atol=1e-7)
    assert grads_ours.keys() == grads_stock.keys()
    # (LoRA's A matrices get no gradient while B is still zero.)
    linear = [n for n in grads_stock if "linear_attn" in n and "lora_A" not in n]
    assert linear and all(grads_stock[n].abs().sum() > 0 for n in linear)
    for name in grads_stock:
        torch.testing.assert_close(grads_ours[name], grads_stock[name], rtol=1e-4, atol=1e-6, msg=name)
