"""Qwen3.5's Gated DeltaNet layers on a packed row ``[prompt | c1 | ... | cG]``: the prompt once, each completion
continued from the prompt's state.

A linear-attention layer reads no attention mask: its recurrent state carries every earlier token, so run over a
packed row the recurrence would go straight through ``prompt | c1 | c2`` and c2 would see c1 without an error.
:func:`packed_gated_delta_net` computes what each per-row sequence ``[prompt | c_i]`` would, in three parts:

- the prompt runs once through the short causal convolution and the gated delta rule, which returns the
  prompt's final recurrent state (``output_final_state``);
- every completion's convolution is preceded by the prompt's last ``kernel - 1`` pre-convolution inputs (the
  window the per-row sequence has there) and its first ``kernel - 1`` outputs are dropped;
- every completion's delta rule starts from the prompt's final state (``initial_state``, one copy per
  completion: backward sums the G copies' gradients into the prompt's state, and from there into the prompt).

The delta rule and the convolution are the functions transformers' own layer calls, as its modeling module
resolved them at import: flash-linear-attention's ``chunk_gated_delta_rule`` (which takes ``initial_state`` and
returns its gradient) and the causal-conv1d kernel when those packages are installed, the pure-torch fallbacks
otherwise. The completions all have the packed row's completion width, so they run as one batch of G sequences
with G initial states; no ``cu_seqlens`` is needed.

The packed pass routes each such layer's packed calls to :func:`packed_linear_attention` (the family's
``linear_attention_packer``, installed by ``packed_attention.install_packed_attention``) and hands it the layout
through the mapping ``attention_mask={"full_attention": None, "linear_attention": layout}`` that Qwen3.5's text
model accepts as given (a packed call that reaches such a layer without it raises); under gradient checkpointing the recompute gets the same arguments,
so it takes the same path.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class PackedRecurrence:
    """Where the prompt and the completions lie in each packed row, for the linear-attention layers.

    Attributes:
        prompt_lengths: per packed row, the length of its prompt part (at the start of the row).
        completions: per packed row, how many completion segments follow the prompt part.
        completion_length: the width of every completion segment (the rest of the row is padding).
    """

    prompt_lengths: tuple[int, ...]
    completions: tuple[int, ...]
    completion_length: int

    @classmethod
    def from_segments(cls, segments: torch.Tensor, completion_length: int) -> PackedRecurrence:
        """The layout of :class:`~crowdvlm.train.shared_prefix.PackedRows` ``segments`` (0 prompt, i completion i,
        -1 padding)."""
        return cls(
            prompt_lengths=tuple((segments == 0).sum(dim=1).tolist()),
            completions=tuple(segments.max(dim=1).values.clamp(min=0).tolist()),
            completion_length=completion_length,
        )


def _kernels(layer: Any) -> tuple[Any, Any]:
    """The delta rule and the convolution the layer's own modeling module calls (fla / causal-conv1d or torch)."""
    module = sys.modules[type(layer).__module__]
    return module.torch_chunk_gated_delta_rule, module.causal_conv1d_fn


def _convolve(layer: Any, conv_fn: Any, inputs: torch.Tensor) -> torch.Tensor:
    """The layer's causal short convolution and activation over ``(batch, length, channels)``."""
    out = conv_fn(
        inputs.transpose(1, 2), layer.conv1d.weight.squeeze(1), layer.conv1d.bias, activation=layer.activation
    )
    return out.transpose(1, 2)


def _heads(layer: Any, mixed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split convolved ``(batch, length, channels)`` into query, key and value heads."""
    batch, length, _ = mixed.shape
    query, key, value = torch.split(mixed, [layer.key_dim, layer.key_dim, layer.value_dim], dim=-1)
    return (
        query.reshape(batch, length, -1, layer.head_k_dim),
        key.reshape(batch, length, -1, layer.head_k_dim),
        value.reshape(batch, length, -1, layer.head_v_dim),
    )


def _packed_row(
    layer: Any,
    mixed: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    prompt_length: int,
    completions: int,
    width: int,
) -> torch.Tensor:
    """The delta rule's output ``(prompt_length + completions * width, v_heads, v_dim)`` of one packed row.

    ``mixed``, ``g``, ``beta``: the row's pre-convolution projections and gates, ``(length, ...)``.
    """
    rule, conv_fn = _kernels(layer)
    window = layer.conv_kernel_size - 1
    prompt, rest = slice(0, prompt_length), slice(prompt_length, prompt_length + completions * width)
    outputs, state = [], None
    if prompt_length:
        q, k, v = _heads(layer, _convolve(layer, conv_fn, mixed[None, prompt]))
        out, state = rule(
            q,
            k,
            v,
            g=g[None, prompt],
            beta=beta[None, prompt],
            output_final_state=True,
            use_qk_l2norm_in_kernel=True,
        )
        outputs.append(out[0])
    # Each completion's convolution window reaches back into the prompt: the prompt's last inputs go first
    # (zeros where the prompt is shorter than the window, as the per-row convolution pads).
    tail = F.pad(
        mixed[max(0, prompt_length - window) : prompt_length], (0, 0, window - min(window, prompt_length), 0)
    )
    segments = mixed[rest].reshape(completions, width, -1)
    convolved = _convolve(layer, conv_fn, torch.cat([tail.expand(completions, -1, -1), segments], dim=1))
    q, k, v = _heads(layer, convolved[:, window:])
    initial = None if state is None else state.expand(completions, *state.shape[1:]).contiguous()
    out, _ = rule(
        q,
        k,
        v,
        g=g[rest].reshape(completions, width, -1),
        beta=beta[rest].reshape(completions, width, -1),
        initial_state=initial,
        output_final_state=False,
        use_qk_l2norm_in_kernel=True,
    )
    outputs.append(out.reshape(completions * width, *out.shape[2:]))
    return torch.cat(outputs)


def packed_gated_delta_net(layer: Any, hidden_states: torch.Tensor, layout: PackedRecurrence) -> torch.Tensor:
    """A ``Qwen3_5GatedDeltaNet`` forward over packed rows ``(n, L, hidden)``: each completion sees the prompt
    and itself, never another completion (padding positions come out as the output projection of zeros)."""
    rows, length, _ = hidden_states.shape
    mixed = layer.in_proj_qkv(hidden_states)
    z = layer.in_proj_z(hidden_states).reshape(rows, length, -1, layer.head_v_dim)
    beta = layer.in_proj_b(hidden_states).sigmoid()
    # As the stock forward: the decay in float32 (A might be -inf in float16 otherwise).
    g = -layer.A_log.float().exp() * F.softplus(layer.in_proj_a(hidden_states).float() + layer.dt_bias)
    core = []
    for row, (prompt_length, completions) in enumerate(
        zip(layout.prompt_lengths, layout.completions, strict=True)
    ):
        out = _packed_row(
            layer, mixed[row], g[row], beta[row], prompt_length, completions, layout.completion_length
        )
        core.append(F.pad(out, (0, 0, 0, 0, 0, length - out.size(0))))
    core_out = torch.stack(core).to(hidden_states.dtype)
    normed = layer.norm(core_out.reshape(-1, layer.head_v_dim), z.reshape(-1, layer.head_v_dim))
    return layer.out_proj(normed.reshape(rows, length, -1))


def packed_linear_attention(
    module: Any, hidden_states: torch.Tensor, *args: Any, attention_mask: Any = None, **kwargs: Any
):
    """Qwen3.5's ``linear_attention_packer`` (``train/sharing/families.py``): a packed call of a Gated DeltaNet
    layer, routed here by :func:`~crowdvlm.train.sharing.packed_attention.install_linear_attention_packer` with
    the layer's own arguments; ``attention_mask`` must be the layer's :class:`PackedRecurrence`
    (:func:`layer_type_masks`)."""
    if not isinstance(attention_mask, PackedRecurrence):
        raise RuntimeError(
            f"{type(module).__name__} got a packed row without its PackedRecurrence: the recurrence would run "
            "through every completion (pass attention_mask=layer_type_masks(...))"
        )
    return packed_gated_delta_net(module, hidden_states, attention_mask)


def layer_type_masks(
    full_attention_mask: Any, layout: PackedRecurrence, linear_layer_types: Sequence[str]
) -> dict[str, Any]:
    """The ``attention_mask`` of a packed forward of a hybrid model: one entry per layer type.

    Qwen3.5's text model takes such a mapping as given (``causal_mask_mapping``): the full-attention layers
    get ``full_attention_mask`` (``None`` where the packed attention function works from the layout kwarg),
    the linear-attention ones ``layout`` (:meth:`PackedRecurrence.from_segments` of the packed rows), which
    :func:`packed_linear_attention` runs.
    """
    return {"full_attention": full_attention_mask} | {kind: layout for kind in linear_layer_types}
