"""The attention function of the packed log-prob passes: each completion attends to [prompt ; itself].

A packed row ``[prompt | c1 | ... | cG]`` (:mod:`crowdvlm.train.sharing.packing`) holds G + 1 attention
sequences: the prompt (causal over itself) and each completion, whose queries see the whole prompt and their own
keys causally, never another completion. :func:`packed_attention_forward` computes exactly that, registered
through transformers' ``AttentionInterface`` as :data:`PACKED_ATTENTION` and switched on for the language model
only, for the packed pass only (:func:`packed_attention`):

- where flash-attn is installed and the tensors are CUDA fp16/bf16: one ``flash_attn_varlen_func`` call per
  layer, ``causal=True``. With fewer queries than keys flash-attn aligns the causal mask bottom-right, so a
  completion's C queries against its ``P + C`` keys see the whole prompt and themselves causally;
- elsewhere (CPU, CI, no flash-attn): the same sequences, gathered and padded into two batches (the prompts,
  the completions), through ``torch.nn.functional.scaled_dot_product_attention`` with the same bottom-right
  causal mask.

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
import functools
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from crowdvlm.train.sharing.families import base_model, family_of

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
    prompt_sequence: torch.Tensor
    _buckets: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def sdpa_buckets(self) -> list[dict[str, Any]]:
        """The sequences as padded batches for the sdpa stand-in: the prompts, then the completions (built once).

        Two batches, so that the completions' few queries are not padded to the prompts' length.

        Returns:
            Per non-empty batch: ``queries`` / ``keys``, indices into ``query_index`` / ``key_index``;
            ``query_slot`` / ``key_slot``, their places in an ``(S_b * max_q)`` / ``(S_b * max_k)`` flat
            batch; ``sequences``, ``max_q``, ``max_k``; and ``mask`` ``(S_b, 1, max_q, max_k)``: query a of a
            sequence sees key b when b is a real key and ``b <= a + (len_k - len_q)`` (bottom-right causal).
            Padded query rows see key 0, so no softmax row is empty; their outputs are never read.
        """
        if self._buckets:
            return self._buckets
        device = self.query_index.device
        len_q, len_k = self.cu_seqlens_q.diff().long(), self.cu_seqlens_k.diff().long()
        sequences = torch.arange(len_q.numel(), device=device)
        seq_q, seq_k = torch.repeat_interleave(sequences, len_q), torch.repeat_interleave(sequences, len_k)
        offset_q = torch.arange(seq_q.numel(), device=device) - self.cu_seqlens_q.long()[seq_q]
        offset_k = torch.arange(seq_k.numel(), device=device) - self.cu_seqlens_k.long()[seq_k]
        for chosen in (self.prompt_sequence, ~self.prompt_sequence):
            if not bool(chosen.any()):
                continue
            rank = chosen.long().cumsum(0) - 1  # a sequence's index within this batch
            b_len_q, b_len_k = len_q[chosen], len_k[chosen]
            max_q, max_k = int(b_len_q.max()), int(b_len_k.max())
            queries, keys = chosen[seq_q].nonzero()[:, 0], chosen[seq_k].nonzero()[:, 0]
            a = torch.arange(max_q, device=device)[None, :, None]
            b = torch.arange(max_k, device=device)[None, None, :]
            visible = (b < b_len_k[:, None, None]) & (b <= a + (b_len_k - b_len_q)[:, None, None])
            visible[:, :, 0] |= a[..., 0] >= b_len_q[:, None]  # padded queries: one key, never read
            self._buckets.append(
                {
                    "queries": queries,
                    "keys": keys,
                    "query_slot": rank[seq_q[queries]] * max_q + offset_q[queries],
                    "key_slot": rank[seq_k[keys]] * max_k + offset_k[keys],
                    "sequences": int(chosen.sum()),
                    "max_q": max_q,
                    "max_k": max_k,
                    "mask": visible[:, None],
                }
            )
        return self._buckets


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
    is_prompt: list[bool] = []
    for r, row in enumerate(rows):
        base = r * length
        prompt_len = sum(1 for s in row if s == 0)
        prompt = torch.arange(base, base + prompt_len)
        if prompt_len:
            query_parts.append(prompt)
            key_parts.append(prompt)
            is_prompt.append(True)
        completions: dict[int, list[int]] = {}
        for pos, s in enumerate(row):
            if s > 0:
                completions.setdefault(s, []).append(base + pos)
        for s in sorted(completions):
            own = torch.tensor(completions[s])
            query_parts.append(own)
            key_parts.append(torch.cat([prompt, own]))
            is_prompt.append(False)
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
        prompt_sequence=torch.tensor(is_prompt, device=device),
    )


@functools.cache
def _flash_attn_installed() -> bool:
    return importlib.util.find_spec("flash_attn") is not None


def flash_varlen_available(query: torch.Tensor) -> bool:
    """Whether flash-attn's varlen kernel can run on ``query`` (installed, CUDA, fp16/bf16)."""
    return query.is_cuda and query.dtype in (torch.float16, torch.bfloat16) and _flash_attn_installed()


def _padded_batch(x: torch.Tensor, rows: torch.Tensor, slots: torch.Tensor, sequences: int, width: int):
    """``x[rows]`` (``(T, h, D)``) placed at ``slots`` of a zero ``(sequences, h, width, D)`` batch."""
    flat = x.new_zeros(sequences * width, x.size(1), x.size(2)).index_copy(0, slots, x[rows])
    return flat.view(sequences, width, x.size(1), x.size(2)).transpose(1, 2)


def _sdpa_sequences(q, k, v, layout: PackedLayout, scaling: float | None, dropout: float) -> torch.Tensor:
    """The sequences' attention through sdpa, one padded batch for the prompts and one for the completions.

    ``q``: ``(Tq, H, D)``, ``k``/``v``: ``(Tk, Hkv, D)`` -> ``(Tq, H, D)``.
    """
    heads, kv_heads, dim = q.size(1), k.size(1), q.size(2)
    out = q.new_zeros(q.shape)
    for bucket in layout.sdpa_buckets():
        n, max_q, max_k = bucket["sequences"], bucket["max_q"], bucket["max_k"]
        qb = _padded_batch(q, bucket["queries"], bucket["query_slot"], n, max_q)
        kb, vb = (
            _padded_batch(x, bucket["keys"], bucket["key_slot"], n, max_k).repeat_interleave(
                heads // kv_heads, dim=1
            )
            for x in (k, v)
        )
        o = torch.nn.functional.scaled_dot_product_attention(
            qb, kb, vb, attn_mask=bucket["mask"], dropout_p=dropout, scale=scaling
        )  # (S_b, H, max_q, D)
        o = o.transpose(1, 2).reshape(n * max_q, heads, dim)[bucket["query_slot"]]
        out = out.index_copy(0, bucket["queries"], o)
    return out


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


def _linear_attention_modules(model: Any) -> list[torch.nn.Module]:
    """The language model's linear-attention modules (Qwen3.5's Gated DeltaNet: ``linear_attn`` of a layer)."""
    return [m for name, m in base_model(model).named_modules() if name.rsplit(".", 1)[-1] == "linear_attn"]


def _packed_or_own_forward(
    module: torch.nn.Module, packer: Callable[..., Any], *args: Any, **kwargs: Any
) -> Any:
    if kwargs.get(LAYOUT_KWARG) is None:
        return module._crowdvlm_own_forward(*args, **kwargs)
    return packer(module, *args, **kwargs)


def install_linear_attention_packer(model: Any, packer: Callable[..., Any]) -> int:
    """Route packed calls of the linear-attention modules to ``packer(module, *args, **kwargs)`` (idempotent).

    ``packer`` receives the module and the call's own arguments (``hidden_states``, ``attention_mask``, ...,
    and ``packed_layout``) and returns what the module's forward returns; calls without a layout run the
    module's own forward. (The family's ``linear_attention_packer`` in ``train/sharing/families.py``.)

    Returns:
        The number of linear-attention modules routed.
    """
    modules = _linear_attention_modules(model)
    for module in modules:
        if getattr(module, "_crowdvlm_own_forward", None) is None:
            module._crowdvlm_own_forward = module.forward
            module.forward = functools.partial(_packed_or_own_forward, module, packer)
    return len(modules)


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
    family = family_of(model)
    if family is not None and family.linear_attention_packer is not None:
        install_linear_attention_packer(model, family.linear_attention_packer)
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
    """Raise :class:`PackedLayoutError` unless every attention module of the language model dispatches packed calls
    and every linear-attention module has a packer.

    A module without the hook would run its configured implementation (``flash_attention_2`` treats the packed
    row as one causal sequence: c2 attends to c1, silently); a linear-attention layer without a packer carries
    its recurrent state from one completion into the next.
    """
    modules = _attention_modules(model)
    missing = [m for m in modules if getattr(m, "_crowdvlm_packed_config", None) is None]
    if not modules or missing:
        raise PackedLayoutError(
            f"{len(missing)} of {len(modules)} attention modules of the language model do not dispatch packed "
            "rows to the packed attention function (install_packed_attention)"
        )
    # A linear-attention layer's recurrent state runs straight through [prompt | c1 | c2]: c2 would see c1.
    linear = _linear_attention_modules(model)
    unrouted = [m for m in linear if getattr(m, "_crowdvlm_own_forward", None) is None]
    if unrouted:
        raise PackedLayoutError(
            f"{len(unrouted)} of {len(linear)} linear-attention modules have no packer for packed rows "
            "(the family's linear_attention_packer in train/sharing/families.py)"
        )
