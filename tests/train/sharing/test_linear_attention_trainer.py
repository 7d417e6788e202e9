"""Qwen3.5 packed in GroupSharedGRPOTrainer: its Gated DeltaNet layers take the packed path (in the forward and
again in gradient checkpointing's recompute, switched on here as the training loop does) and the log-probs, loss
and every gradient equal stock TRL's, with LoRA on the linear-attention projections as the Qwen3.5 recipe sets
it. The checks every packing family shares (decoder tokens per pass, ...) are in test_family_packing.py."""

from __future__ import annotations

import pytest
import torch

from crowdvlm.train.sharing import linear_attention
from crowdvlm.train.sharing.trainer import GroupSharedGRPOTrainer
from grpo_helpers import assert_logps_match_stock, assert_loss_and_grads_match_stock, scored_batch
from sharing_helpers import PROMPTS, G
from sharing_helpers import group_trainer as _trainer

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
    return trainer, scored_batch(
        trainer, [trainer.train_dataset[i] for i in range(PROMPTS) for _ in range(G)]
    )


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
    return sum(1 for name, _ in trainer.model.named_modules() if name.endswith("linear_attn"))


def test_logps_match_stock_with_each_linear_attention_layer_packed(qwen3_5, packed_calls):
    trainer, batch = qwen3_5
    assert_logps_match_stock(trainer, batch)  # in chunks of 3 rows
    layers = _linear_layers(trainer)
    assert layers and packed_calls["no_grad"] and packed_calls["no_grad"] % layers == 0


def test_loss_and_every_gradient_match_stock_through_the_checkpoint_recompute(qwen3_5, packed_calls):
    trainer, _ = qwen3_5
    grads = assert_loss_and_grads_match_stock(trainer, qwen3_5[1])
    # Every linear-attention layer ran packed in the forward and again in the checkpointed recompute.
    assert packed_calls["grad"] == 2 * _linear_layers(trainer)
    # (LoRA's A matrices get no gradient while B is still zero.)
    linear = [n for n in grads if "linear_attn" in n and "lora_A" not in n]
    assert linear and all(grads[n].abs().sum() > 0 for n in linear)
