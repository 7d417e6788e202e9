"""One Gated DeltaNet layer on a packed row ``[prompt | c1 | ... | cG]`` equals the layer run on each
``[prompt | c_i]`` alone: outputs, and the gradients of its weights and of its inputs (the prompt's summed)."""

from __future__ import annotations

import copy

import pytest
import torch

from crowdvlm.train.sharing.linear_attention import (
    PackedRecurrence,
    packed_gated_delta_net,
    packed_linear_attention,
)

HIDDEN = 32
WIDTH = 5  # completion width C


def _layer(seed: int = 0):
    from transformers.models.qwen3_5.configuration_qwen3_5 import Qwen3_5TextConfig
    from transformers.models.qwen3_5.modeling_qwen3_5 import Qwen3_5GatedDeltaNet

    config = Qwen3_5TextConfig(
        hidden_size=HIDDEN,
        num_hidden_layers=2,
        layer_types=["linear_attention", "full_attention"],
        linear_conv_kernel_dim=4,
        linear_key_head_dim=8,
        linear_value_head_dim=8,
        linear_num_key_heads=2,
        linear_num_value_heads=4,
    )
    torch.manual_seed(seed)
    layer = Qwen3_5GatedDeltaNet(config, layer_idx=0).double()
    with torch.no_grad():  # random, not the init's ones/zeros, so every weight matters
        for p in layer.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    return layer


def _rows(prompt_lengths, completions, width=WIDTH):
    """Random packed hidden states, their layout, and per row (prompt, [segment_i]) views of the same tensor."""
    torch.manual_seed(1)
    used = [p + g * width for p, g in zip(prompt_lengths, completions, strict=True)]
    hidden = torch.randn(len(used), max(used) + 3, HIDDEN, dtype=torch.float64, requires_grad=True)
    layout = PackedRecurrence(tuple(prompt_lengths), tuple(completions), width)
    return hidden, layout


def _per_row_outputs(layer, hidden, layout):
    """Stock forward on each ``[prompt | c_i]`` alone, placed where the packed row has c_i (prompt: the first)."""
    out = torch.zeros(*hidden.shape[:2], layer.out_proj.out_features, dtype=hidden.dtype)
    for row, (p, g) in enumerate(zip(layout.prompt_lengths, layout.completions, strict=True)):
        for i in range(g):
            start = p + i * layout.completion_length
            seq = torch.cat([hidden[row, :p], hidden[row, start : start + layout.completion_length]])
            alone = type(layer).forward(layer, seq[None])[0]
            out[row, start : start + layout.completion_length] = alone[p:]
            if i == 0:
                out[row, :p] = alone[:p]
    return out


@pytest.mark.parametrize(
    ("prompt_lengths", "completions"),
    [((9,), (4,)), ((2,), (3,)), ((0,), (2,)), ((70, 11), (2, 3))],
    ids=["one-group", "prompt-shorter-than-conv-window", "no-prompt", "two-groups-chunked-prompt"],
)
def test_packed_layer_equals_each_completion_run_alone(prompt_lengths, completions):
    layer = _layer()
    hidden, layout = _rows(prompt_lengths, completions)
    weights = torch.randn(*hidden.shape[:2], HIDDEN, dtype=torch.float64)
    used = torch.zeros(hidden.shape[:2], dtype=torch.bool)
    for row, (p, g) in enumerate(zip(prompt_lengths, completions, strict=True)):
        used[row, : p + g * WIDTH] = True
    weights = weights * used[..., None]

    results = {}
    for name, run in (("packed", lambda: packed_gated_delta_net(layer, hidden, layout)), ("alone", None)):
        layer.zero_grad()
        hidden.grad = None
        out = run() if run else _per_row_outputs(layer, hidden, layout)
        (out * weights).sum().backward()
        grads = {n: p.grad.clone() for n, p in layer.named_parameters()}
        results[name] = (out * used[..., None], grads, hidden.grad.clone())
    (out_p, grads_p, hidden_p), (out_a, grads_a, hidden_a) = results["packed"], results["alone"]
    close = dict(rtol=1e-4, atol=1e-5)  # the delta rule computes in float32 whatever the input dtype
    torch.testing.assert_close(out_p, out_a, **close)
    for name in grads_a:
        torch.testing.assert_close(grads_p[name], grads_a[name], **close, msg=name)
    # The prompt's input gradient is the sum over its completions (plus its own outputs' share, counted once).
    torch.testing.assert_close(hidden_p, hidden_a, **close)
    assert hidden_p[0, : prompt_lengths[0]].abs().sum() > 0 or prompt_lengths[0] == 0


def test_the_stock_layer_on_a_packed_row_leaks_one_completion_into_the_next():
    """The trap this path exists for: no mask reaches the recurrence, so c2 sees c1 through the state."""
    layer = _layer()
    hidden, layout = _rows((9,), (2,))
    with torch.no_grad():
        stock = type(layer).forward(layer, hidden)
        alone = _per_row_outputs(layer, hidden, layout)
        packed = packed_gated_delta_net(layer, hidden, layout)
    second = slice(9 + WIDTH, 9 + 2 * WIDTH)
    assert not torch.allclose(stock[0, second], alone[0, second])
    torch.testing.assert_close(packed[0, second], alone[0, second], rtol=1e-5, atol=1e-6)


def test_routed_layer_runs_the_packed_path_and_a_deep_copy_keeps_its_own():
    """The family's packer as packed_attention routes it: packed calls here, others to the stock forward."""
    from crowdvlm.train.sharing.packed_attention import install_linear_attention_packer

    holder = torch.nn.Module()
    holder.linear_attn = layer = _layer()
    assert install_linear_attention_packer(holder, packed_linear_attention) == 1
    hidden, layout = _rows((9,), (2,))
    packed_call = dict(attention_mask=layout, packed_layout=object())
    with torch.no_grad():
        torch.testing.assert_close(
            layer(hidden, **packed_call), packed_gated_delta_net(layer, hidden, layout)
        )
        torch.testing.assert_close(layer(hidden), type(layer).forward(layer, hidden))
        twin = copy.deepcopy(holder).linear_attn
        twin.out_proj.weight.mul_(2)
        torch.testing.assert_close(twin(hidden, **packed_call), packed_gated_delta_net(twin, hidden, layout))
        assert not torch.allclose(twin(hidden, **packed_call), layer(hidden, **packed_call))


def test_layout_from_packed_segments():
    segments = torch.tensor([[0, 0, 0, 1, 1, 2, 2], [0, 1, 1, -1, -1, -1, -1]])
    assert PackedRecurrence.from_segments(segments, 2) == PackedRecurrence((3, 1), (2, 1), 2)


def test_a_packed_call_without_the_recurrent_layout_is_refused():
    layer = _layer()
    hidden, _ = _rows((9,), (2,))
    with pytest.raises(RuntimeError, match="without its PackedRecurrence"), torch.no_grad():
        packed_linear_attention(layer, hidden, attention_mask=None, packed_layout=object())
