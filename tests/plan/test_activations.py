"""The planner's meta-device activation count: per-layer shares by layer type, the packed Gated DeltaNet route."""

from __future__ import annotations

import pytest
import torch

from crowdvlm.plan.activations import (
    PackedRows,
    PassShape,
    _layer_bytes,
    _text_pass_bytes,
    training_pass_bytes,
)
from crowdvlm.plan.memory import build_meta_model, load_model_config

PACKED = PassShape(1, 63 + 8 * 16, 8 * 16, 1, 256, packed=PackedRows(63, 8, 16, kernel="sdpa"))


def meta_model(tiny_family_dir, family):
    return build_meta_model(load_model_config(str(tiny_family_dir(family))), torch.float32)


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_5"])
def test_layer_shares_by_type_add_up_to_the_whole_decoder(tiny_family_dir, family):
    model = meta_model(tiny_family_dir, family)
    config = model.model.language_model.config
    kinds = getattr(config, "layer_types", None) or ["full_attention"] * config.num_hidden_layers
    base, per_type = _layer_bytes(model, PACKED, torch.float32, "cpu")
    share = dict(zip(dict.fromkeys(kinds), per_type, strict=True))
    assert len(share) == (2 if family == "qwen3_5" else 1)
    whole = _text_pass_bytes(model, PACKED, torch.float32, "cpu")
    # exact but for the rotary tables, which the first attention layer's share holds and the others reuse
    assert base + sum(share[kind] for kind in kinds[: config.num_hidden_layers]) == pytest.approx(
        whole, rel=0.01
    )


def test_checkpointing_recomputes_the_largest_layer_type(tiny_family_dir):
    model = meta_model(tiny_family_dir, "qwen3_5")
    config = model.model.language_model.config
    base, per_type = _layer_bytes(model, PACKED, torch.float32, "cpu")
    assert per_type[0] != per_type[1]  # a Gated DeltaNet layer and an attention layer keep different amounts
    text_only = PassShape(1, PACKED.text_tokens, PACKED.scored_tokens, 0, 256, packed=PACKED.packed)
    layer_input = text_only.text_tokens * config.hidden_size * 4
    kept = training_pass_bytes(model, text_only, torch.float32, checkpointing=True, kernel="cpu")
    assert kept == base + config.num_hidden_layers * layer_input + max(per_type)


def test_packed_qwen3_5_runs_the_gated_delta_net_layers_per_completion(tiny_family_dir, monkeypatch):
    """The packed row's linear-attention layers keep what G completion rows from the prompt's state keep (the
    64-token chunks of the CPU kernel padding each one), not what one recurrence over the whole row keeps (the
    count before the planner modelled them)."""
    from crowdvlm.plan import activations
    from crowdvlm.train.sharing.packed_attention import _linear_attention_modules

    model = meta_model(tiny_family_dir, "qwen3_5")
    packed = _text_pass_bytes(model, PACKED, torch.float32, "cpu")
    for module in _linear_attention_modules(model):  # the stock forward, and no layout for it
        module.forward = module._crowdvlm_own_forward
    monkeypatch.setattr(activations, "family_of", lambda model: None)
    one_sequence = _text_pass_bytes(model, PACKED, torch.float32, "cpu")
    assert packed > one_sequence
