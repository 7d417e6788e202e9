"""The attention function of the packed log-prob passes: each completion attends to [prompt ; itself].

A packed row ``[prompt | c1 | ... | cG]`` (:mod:`crowdvlm.train.sharing.packing`) holds G + 1 attention
sequences: the prompt (causal over itself) and each completion, whose queries see the whole prompt and their own
keys causally, never another completion. :func:`packed_attention_forward` computes exactly that, registered
through transformers' ``AttentionInterface`` as :data:`PACKED_ATTENTION` and switched on for the language model
only, for the packed pass only (:func:`packed_attention`):

- where flash-attn is installed and the tensors are CUDA fp16/bf16: one ``flash_attn_varlen_func`` call per
  layer, ``causal=True``. With fewer queries than keys flash-attn aligns the causal mask bottom-right, so a
  completion's C queries against its ``P + C`` keys see the whole prompt and themselves causally;
- elsewhere (CPU, CI, no flash-attn): the same sequences, gathered and padded into one batch, through
  ``torch.nn.functional.scaled_dot_product_attention`` with the same bottom-right causal mask.

Both paths take the prompt's keys and values gathered once per completion (an index into the layer's keys), so
under autograd the G completions' gradients with respect to the prompt's keys and values sum back into it.

transformers' stock ``flash_attention_2`` must never see a packed row: it cuts a row into sequences only where
``position_ids`` restart at their minimum, and completions restart at P, not 0, so c2 would attend to c1
silently. :func:`install_packed_attention` hooks every attention module of the language model so that a call
carrying a packed layout runs this function whatever the configured implementation (recomputation under
gradient checkpointing included), and :func:`check_packed_attention` refuses a packed pass on a model where any
attention module is not hooked.
"""

from __future__ import annotations

import copy
import importlib.util
from dataclasses import dataclass, field
from typing import Any

import torch

from crowdvlm.train.sharing.families import base_model

PACKED_ATTENTION = "crowdvlm_packed"
# The forward keyword that carries the layout down to the attention function.
LAYOUT_KWARG = "packed_layout"


class PackedLayoutError(RuntimeError):
    """A packed row would reach an attention function that does not know its layout."""


@dataclass
class PackedLayout:
    """The attention sequences of ``n`` packed rows of length ``L``, as flat indices into ``n * L`` positions.

    Sequence order: for each row, its prompt, then its completions. The prompt's key positions appear once in its
    own sequence and once more in each completion's.

    Attributes:
        shape: ``(n, L)``.
        query_index: ``(Tq,)`` the position of every query, sequence after sequence (padding excluded).
        key_index: ``(Tk,)`` the position of every key, sequence after sequence.
        cu_seqlens_q, cu_seqlens_k: ``(S + 1,)`` int32 sequence boundaries in ``query_index`` / ``key_index``.
        max_seqlen_q, max_seqlen_k: the longest sequence of each.
    """

    shape: tuple[int, int]
    query_index: torch.Tensor
    key_index: torch.Tensor
    cu_seqlens_q: torch.Tensor
    cu_seqlens_k: torch.Tensor
    max_seqlen_q: int
    max_seqlen_k: int
    _padded: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    def padded(self) -> dict[str, torch.Tensor]:
        """Indices and mask that lay the sequences out as one padded batch (the sdpa stand-in; built once).

        Returns:
            ``query_slot`` ``(Tq,)`` and ``key_slot`` ``(Tk,)``: each query's / key's place in an
            ``(S * max_q)`` / ``(S * max_k)`` flat batch; ``mask`` ``(S, 1, max_q, max_k)``: query a of a
            sequence sees key b when b is a real key and ``b <= a + (len_k - len_q)`` (bottom-right causal).
            Padded query rows see key 0, so no softmax row is empty; their outputs are never read.
        """
        if not self._padded:
            device = self.query_index.device
            len_q, len_k = self.cu_seqlens_q.diff().long(), self.cu_seqlens_k.diff().long()
            sequences = len_q.numel()
            max_q, max_k = self.max_seqlen_q, self.max_seqlen_k
            seq_q = torch.repeat_interleave(torch.arange(sequences, device=device), len_q)
            seq_k = torch.repeat_interleave(torch.arange(sequences, device=device), len_k)
            offset_q = torch.arange(seq_q.numel(), device=device) - self.cu_seqlens_q.long()[seq_q]
            offset_k = torch.arange(seq_k.numel(), device=device) - self.cu_seqlens_k.long()[seq_k]
            a = torch.arange(max_q, device=device)[None, :, None]
            b = torch.arange(max_k, device=device)[None, None, :]
            visible = (b < len_k[:, None, None]) & (b <= a + (len_k - len_q)[:, None, None])
            visible[:, :, 0] |= a[..., 0] >= len_q[:, None]  # padded queries: one key, never read
            self._padded = {
                "query_slot": seq_q * max_q + offset_q,
                "key_slot": seq_k * max_k + offset_k,
                "mask": visible[:, None],
            }
        return self._padded


def packed_layout(segments: torch.Tensor) -> PackedLayout:
    """The attention sequences of packed rows from their segment ids.

    Args:
        segments: ``(n, L)``: 0 for the prompt (the leading positions of a row), i for completion i (from 1),
            -1 for padding.
    """
    n, length = segments.shape
    rows = segments.tolist()
    query_parts: list[torch.Tensor] = []
    key_parts: list[torch.Tensor] = []
    for r, row in enumerate(rows):
        base = r * length
        prompt_len = sum(1 for s in row if s == 0)
        prompt = torch.arange(base, base + prompt_len)
        if prompt_len:
            query_parts.append(prompt)
            key_parts.append(prompt)
        completions: dict[int, list[int]] = {}
        for pos, s in enumerate(row):
            if s > 0:
                completions.setdefault(s, []).append(base + pos)
        for s in sorted(completions):
            own = torch.tensor(completions[s])
            query_parts.append(own)
            key_parts.append(torch.cat([prompt, own]))
    len_q = torch.tensor([p.numel() for p in query_parts])
    len_k = torch.tensor([p.numel() for p in key_parts])
    zero = torch.zeros(1, dtype=torch.int32)
    device = segments.device
    return PackedLayout(
        shape=(n, length),
        query_index=torch.cat(query_parts).to(device),
        key_index=torch.cat(key_parts).to(device),
        cu_seqlens_q=torch.cat([zero, len_q.cumsum(0).int()]).to(device),
        cu_seqlens_k=torch.cat([zero, len_k.cumsum(0).int()]).to(device),
        max_seqlen_q=int(len_q.max()),
        max_seqlen_k=int(len_k.max()),
    )


def flash_varlen_available(query: torch.Tensor) -> bool:
    """Whether flash-attn's varlen kernel can run on ``query`` (installed, CUDA, fp16/bf16)."""
    return (
        query.is_cuda
        and query.dtype in (torch.float16, torch.bfloat16)
        and importlib.util.find_spec("flash_attn") is not None
    )


def _sdpa_sequences(q, k, v, layout: PackedLayout, scaling: float | None, dropout: float) -> torch.Tensor:
    """The sequences' attention as one padded sdpa call. ``q``: ``(Tq, H, D)``, ``k``/``v``: ``(Tk, Hkv, D)``."""
    padded = layout.padded()
    sequences = layout.cu_seqlens_q.numel() - 1
    heads, kv_heads, dim = q.size(1), k.size(1), q.size(2)

    def batch(x: torch.Tensor, slot: torch.Tensor, width: int) -> torch.Tensor:  # -> (S, heads, width, D)
        flat = x.new_zeros(sequences * width, x.size(1), dim).index_copy(0, slot, x)
        return flat.view(sequences, width, x.size(1), dim).transpose(1, 2)

    qb = batch(q, padded["query_slot"], layout.max_seqlen_q)
    kb = batch(k, padded["key_slot"], layout.max_seqlen_k).repeat_interleave(heads // kv_heads, dim=1)
    vb = batch(v, padded["key_slot"], layout.max_seqlen_k).repeat_interleave(heads // kv_heads, dim=1)
    out = torch.nn.functional.scaled_dot_product_attention(
        qb, kb, vb, attn_mask=padded["mask"], dropout_p=dropout, scale=scaling
    )  # (S, H, max_q, D)
    return out.transpose(1, 2).reshape(sequences * layout.max_seqlen_q, heads, dim)[padded["query_slot"]]


def packed_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    packed_layout: PackedLayout | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """``AttentionInterface`` function: ``query`` ``(n, H, L, D)``, ``key``/``value`` ``(n, Hkv, L, D)`` ->
    ``(n, L, H, D)``; padding positions get zeros. The layout comes through the forward's ``packed_layout``."""
    if packed_layout is None:
        raise PackedLayoutError(f"{PACKED_ATTENTION} attention called without a packed_layout")
    n, heads, length, dim = query.shape
    if (n, length) != packed_layout.shape:
        raise PackedLayoutError(
            f"packed layout is for rows {packed_layout.shape}, attention got {(n, length)}"
        )
    q = query.transpose(1, 2).reshape(n * length, heads, dim)[packed_layout.query_index]
    k = key.transpose(1, 2).reshape(n * length, key.size(1), dim)[packed_layout.key_index]
    v = value.transpose(1, 2).reshape(n * length, value.size(1), dim)[packed_layout.key_index]
    if flash_varlen_available(q):
        from flash_attn import flash_attn_varlen_func

        out = flash_attn_varlen_func(
            q,
            k,
            v,
            packed_layout.cu_seqlens_q,
            packed_layout.cu_seqlens_k,
            packed_layout.max_seqlen_q,
            packed_layout.max_seqlen_k,
            dropout_p=dropout,
            softmax_scale=scaling,
            causal=True,  # bottom-right aligned: the whole prompt, then the completion causally
        )
    else:
        out = _sdpa_sequences(q, k, v, packed_layout, scaling, dropout)
    full = out.new_zeros(n * length, heads, dim).index_copy(0, packed_layout.query_index, out)
    return full.view(n, length, heads, dim), None


def register_packed_attention() -> None:
    """Register :func:`packed_attention_forward` as :data:`PACKED_ATTENTION` (idempotent)."""
    from transformers import AttentionInterface

    AttentionInterface.register(PACKED_ATTENTION, packed_attention_forward)


def _attention_modules(model: Any) -> list[torch.nn.Module]:
    """The language model's attention modules (those that dispatch through the text config's implementation)."""
    text_config = base_model(model).config.get_text_config()
    return [
        m
        for m in base_model(model).modules()
        if getattr(m, "config", None) is text_config and hasattr(m, "layer_idx") and hasattr(m, "scaling")
    ]


def _to_packed_kernel(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
    """Forward pre-hook: a call that carries a packed layout dispatches to the packed attention function."""
    if kwargs.get(LAYOUT_KWARG) is not None:
        module._crowdvlm_config = module.config
        module.config = module._crowdvlm_packed_config


def _restore_config(module: torch.nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
    """Forward hook (always called, errors included): the module's own config back."""
    if getattr(module, "_crowdvlm_config", None) is not None:
        module.config = module._crowdvlm_config
        module._crowdvlm_config = None


def install_packed_attention(model: Any) -> int:
    """Make the language model's attention modules dispatch packed calls to :func:`packed_attention_forward`.

    Each attention module of the language model gets a forward pre-hook: a call whose keyword arguments carry a
    ``packed_layout`` runs with a copy of the text config naming :data:`PACKED_ATTENTION`; any other call runs
    as before (generation, the per-row passes). The choice is made per call from the call's own arguments, so
    gradient checkpointing's recomputation in backward, long after the packed forward returned, takes the same
    path. The vision tower is untouched. Idempotent.

    Returns:
        The number of attention modules that dispatch packed calls.
    """
    register_packed_attention()
    modules = _attention_modules(model)
    for module in modules:
        if getattr(module, "_crowdvlm_packed_config", None) is not None:
            continue
        packed = copy.copy(module.config)
        packed._attn_implementation_internal = PACKED_ATTENTION
        module._crowdvlm_packed_config = packed
        module._crowdvlm_config = None
        module.register_forward_pre_hook(_to_packed_kernel, with_kwargs=True)
        module.register_forward_hook(_restore_config, with_kwargs=True, always_call=True)
    return len(modules)


def check_packed_attention(model: Any) -> None:
    """Raise :class:`PackedLayoutError` unless every attention module of the language model dispatches packed calls.

    A module without the hook would run its configured implementation (``flash_attention_2`` treats the packed
    row as one causal sequence: c2 attends to c1, silently).
    """
    modules = _attention_modules(model)
    missing = [m for m in modules if getattr(m, "_crowdvlm_packed_config", None) is None]
    if not modules or missing:
        raise PackedLayoutError(
            f"{len(missing)} of {len(modules)} attention modules of the language model do not dispatch packed "
            "rows to the packed attention function (install_packed_attention)"
        )
