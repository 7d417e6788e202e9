"""Activation bytes of a training pass, counted on the meta device: what autograd saves, with no weights.

The model of the recipe is built on the ``meta`` device (``accelerate.init_empty_weights``: exact shapes, no
memory) and the decoder runs on tensors of the training pass's real shape; :class:`SavedBytes` adds up the
distinct storages autograd saves for backward (parameters aside), the same count ``benchmarks/grpo_step.py``
makes on a real pass. Nothing is computed, so a 9B model at 8 x 1,300 tokens costs milliseconds.

Two things a meta run cannot do itself are stood in for:

- the attention kernel: ``flash`` (flash-attention 2, PyTorch's flash and memory-efficient kernels, the CPU
  flash kernel sdpa uses) saves q, k, v, the output and a float32 log-sum-exp per head and token;
  :class:`_FlashLikeAttention` saves exactly those. A packed row on CPU goes through sdpa with a dense 4-D
  boolean mask, which the CPU kernel turns into a float32 one per layer and keeps: ``dense-mask`` adds it.
- the vision tower's data-dependent set-up (windows, position grid): one block runs on ``N`` patch rows with
  its rotary tables given, and counts ``depth`` times; the patch embedding and the mergers run as they are.

Qwen3.5's linear-attention layers run transformers' pure-PyTorch chunked kernel here (what a CPU, or a GPU
without flash-linear-attention, runs); flash-linear-attention recomputes more and saves less, so on such a GPU
the figure is an upper bound.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

ATTENTION_NAME = "crowdvlm_plan_saves"  # a name without "flash": transformers reads those as hub kernels


class SavedBytes:
    """Bytes of the distinct storages autograd saves for backward while active (parameters left out).

    Storages are told apart by their ``StorageImpl`` (``_cdata``), which works on the meta device too, where
    every ``data_ptr`` is 0.
    """

    def __init__(self, exclude: torch.nn.Module | None = None) -> None:
        self.total = 0
        self._seen: set[int] = set()
        if exclude is not None:
            self._seen |= {p.untyped_storage()._cdata for p in exclude.parameters()}

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage._cdata not in self._seen:
            self._seen.add(storage._cdata)
            self.total += storage.nbytes()
        return tensor

    @contextlib.contextmanager
    def counting(self):
        with torch.autograd.graph.saved_tensors_hooks(self._pack, lambda tensor: tensor):
            yield self


class _FlashLikeAttention(torch.autograd.Function):
    """Saves what flash-attention saves: q, k, v, the output and a float32 log-sum-exp per head and token."""

    @staticmethod
    def forward(ctx, query, key, value, mask):  # (B, H, T, D) each; k/v with fewer heads (GQA)
        batch, heads, tokens, dim = query.shape
        # laid out (B, T, H, D) as the kernels return it, so `.transpose(1, 2).contiguous()` copies nothing
        out = query.new_empty(batch, tokens, heads, value.shape[-1]).transpose(1, 2)
        lse = query.new_empty(batch, heads, tokens, dtype=torch.float32)
        saved = [query, key, value, out, lse]
        if mask is not None:  # CPU sdpa turns a boolean mask into a float one per call and keeps it
            saved.append(mask.new_empty(mask.shape, dtype=torch.float32))
        ctx.save_for_backward(*saved)
        return out

    @staticmethod
    def backward(ctx, grad):  # never run: the meta pass only counts what is saved
        query, key, value = ctx.saved_tensors[:3]
        return torch.zeros_like(query), torch.zeros_like(key), torch.zeros_like(value), None


def _flash_like_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    mask = attention_mask if isinstance(attention_mask, torch.Tensor) and attention_mask.dim() == 4 else None
    out = _FlashLikeAttention.apply(query, key, value, mask)
    return out.transpose(1, 2).contiguous(), None


def register_attention() -> str:
    """Register the stand-in kernel with transformers (idempotent); returns its ``attn_implementation`` name."""
    from transformers import AttentionInterface

    AttentionInterface.register(ATTENTION_NAME, _flash_like_attention)
    return ATTENTION_NAME


@dataclass(frozen=True)
class PassShape:
    """The tensors of one training forward.

    ``text_rows`` rows of ``text_tokens`` tokens go through the decoder (stock TRL: B rows of prompt +
    completion; a packed pass: one row per group of ``(P - 1) + G x C``); ``scored_tokens`` of them reach the
    LM head; ``vision_images`` images of ``patches_per_image`` patch rows go through the vision tower with
    gradients (0 when it is frozen).
    """

    text_rows: int
    text_tokens: int
    scored_tokens: int
    vision_images: int
    patches_per_image: int
    packed: bool = False


def _text_pass_bytes(model, shape: PassShape, dtype: torch.dtype, kernel: str) -> int:
    text = model.model.language_model
    config = text.config
    rows, tokens = shape.text_rows, shape.text_tokens
    embeds = torch.empty(rows, tokens, config.hidden_size, device="meta", dtype=dtype, requires_grad=True)
    position_rows = 4 if config.model_type.startswith("qwen3_5") else 3
    positions = torch.zeros(position_rows, rows, tokens, device="meta", dtype=torch.long)
    mask = None
    if shape.packed and kernel == "dense-mask":  # CPU sdpa with the packed 4-D boolean mask
        mask = torch.ones(rows, 1, tokens, tokens, device="meta", dtype=torch.bool)
    counter = SavedBytes(exclude=model)
    with counter.counting():
        text(inputs_embeds=embeds, position_ids=positions, attention_mask=mask)
    # input ids (int64) and the image-placeholder mask of the embedding step; TRL's fused LM head keeps the
    # scored positions' hidden states and a float32 log-prob, log-sum-exp and label per scored token.
    embedding = rows * tokens * (8 + 1)
    head = shape.scored_tokens * (config.hidden_size * dtype.itemsize + 3 * 4)
    return counter.total + embedding + head


def _vision_pass_bytes(model, shape: PassShape, dtype: torch.dtype) -> tuple[int, int, int]:
    """(everything the vision tower saves, one block's share, the block input's bytes) for the images."""
    if not shape.vision_images:
        return 0, 0, 0
    visual = model.model.visual
    config = visual.config
    patches = shape.vision_images * shape.patches_per_image
    patch_pixels = config.in_channels * config.temporal_patch_size * config.patch_size**2
    head_dim = config.hidden_size // config.num_heads
    pixels = torch.empty(patches, patch_pixels, device="meta", dtype=dtype)
    cos = torch.empty(patches, head_dim, device="meta", dtype=torch.float32)
    cu_seqlens = torch.arange(0, patches + 1, shape.patches_per_image, dtype=torch.int32)
    counter = SavedBytes(exclude=model)
    with counter.counting():
        hidden = visual.patch_embed(pixels)
    embed_bytes = counter.total
    block = SavedBytes(exclude=model)
    with block.counting():
        visual.blocks[0](
            hidden,
            cu_seqlens=cu_seqlens,
            max_seqlen=shape.patches_per_image,
            position_embeddings=(cos, cos),
        )
    merger = SavedBytes(exclude=model)
    with merger.counting():
        visual.merger(hidden)
        for deepstack in getattr(visual, "deepstack_merger_list", []):
            deepstack(hidden)
    total = embed_bytes + block.total * config.depth + merger.total
    return total, block.total, patches * config.hidden_size * dtype.itemsize


def training_pass_bytes(
    model, shape: PassShape, dtype: torch.dtype, *, checkpointing: bool, kernel: str = "flash"
) -> int:
    """Bytes autograd keeps for the backward of one training forward of ``model`` (a meta-device model).

    Args:
        model: a Qwen VL ``...ForConditionalGeneration`` built on the meta device with
            ``attn_implementation=register_attention()``.
        shape: the pass's rows, tokens and images.
        dtype: the activations' dtype (the weights' dtype: bf16 runs are bf16 end to end).
        checkpointing: gradient checkpointing; then each decoder layer / vision block keeps only its input,
            and the layer being recomputed in backward adds its own full share once.
        kernel: ``flash`` (GPU kernels; CPU sdpa without a mask) or ``dense-mask`` (CPU sdpa with the
            packed 4-D mask).
    """
    text_total = _text_pass_bytes(model, shape, dtype, kernel)
    vision_total, block, block_input = _vision_pass_bytes(model, shape, dtype)
    if not checkpointing:
        return text_total + vision_total
    config = model.model.language_model.config
    layers = config.num_hidden_layers
    layer_input = shape.text_rows * shape.text_tokens * config.hidden_size * dtype.itemsize
    one_layer = _one_layer_bytes(model, shape, dtype, kernel)
    text_kept = text_total - layers * one_layer + layers * layer_input + one_layer
    if not vision_total:
        return text_kept
    depth = model.model.visual.config.depth
    vision_kept = vision_total - depth * block + depth * block_input + block
    return text_kept + vision_kept


def _one_layer_bytes(model, shape: PassShape, dtype: torch.dtype, kernel: str) -> int:
    """The decoder's saved bytes per layer (averaged over its layer types)."""
    text = model.model.language_model
    layers = text.config.num_hidden_layers
    total = _text_pass_bytes(model, shape, dtype, kernel)
    saved_layers = text.layers
    text.layers = saved_layers[:0]
    try:
        base = _text_pass_bytes(model, shape, dtype, kernel)
    finally:
        text.layers = saved_layers
    return (total - base) // layers
