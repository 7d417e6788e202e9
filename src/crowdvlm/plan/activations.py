"""Activation bytes of a training pass, counted on the meta device: what autograd saves, with no weights.

The model of the recipe is built on the ``meta`` device (``accelerate.init_empty_weights``: exact shapes, no
memory) and the decoder runs on tensors of the training pass's real shape; :class:`SavedBytes` adds up the
distinct storages autograd saves for backward (parameters aside), the same count ``benchmarks/grpo_step.py``
makes on a real pass. Nothing is computed, so a 9B model at 8 x 1,300 tokens costs milliseconds.

Two things a meta run cannot do itself are stood in for:

- the attention kernel: flash-attention 2 and PyTorch's fused kernels (the CPU one included) save q, k, v, the
  output and a float32 log-sum-exp per head and token; :class:`_KernelSaves` saves tensors of exactly those
  shapes. crowdvlm's packed rows (``crowdvlm.train.sharing.packed_attention``) keep what its kernel keeps:
  :func:`_packed_saves`, for ``flash_attn_varlen_func`` on a GPU or the two padded sdpa batches on a CPU.
- the vision tower's data-dependent set-up (windows, position grid): one block runs on ``N`` patch rows with
  its rotary tables given, and counts ``depth`` times; the patch embedding and the mergers run as they are.

Qwen3.5's linear-attention (Gated DeltaNet) layers run transformers' pure-PyTorch chunked kernel here (what a
CPU, or a GPU without flash-linear-attention, runs); flash-linear-attention recomputes more and saves less, so on
such a GPU the figure is an upper bound. On a packed row they run crowdvlm's own packed function
(``crowdvlm.train.sharing.linear_attention``: the prompt once, then the G completions as G rows from the prompt's
state, each padded to the kernel's 64-token chunks), routed exactly as the training pass routes them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import weakref
from dataclasses import dataclass

import torch

from crowdvlm.train.sharing.families import family_of
from crowdvlm.train.sharing.linear_attention import PackedRecurrence, layer_type_masks
from crowdvlm.train.sharing.packed_attention import LAYOUT_KWARG, install_linear_attention_packer

ATTENTION_NAME = "crowdvlm_plan_saves"  # a name without "flash": transformers reads those as hub kernels


class SavedBytes:
    """Bytes of the distinct storages autograd holds for backward: saved while :meth:`counting`, alive at :meth:`total`.

    Read :meth:`total` while the pass's output is still alive: a node whose result nobody keeps is freed with what
    it saved, and that never adds to the peak. Only tensors still alive are added up, each storage once (told apart
    by its ``StorageImpl``, ``_cdata``, which works on the meta device too, where every ``data_ptr`` is 0; two live
    storages never share one, where a freed storage's address may be reused). Parameters are left out.
    """

    def __init__(self, exclude: torch.nn.Module | None = None) -> None:
        self._excluded = (
            {p.untyped_storage()._cdata for p in exclude.parameters()} if exclude is not None else set()
        )
        self._saved: list[weakref.ref] = []

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        self._saved.append(weakref.ref(tensor))
        return tensor  # the node holds this very object until its backward runs or it is freed

    @contextlib.contextmanager
    def counting(self):
        with torch.autograd.graph.saved_tensors_hooks(self._pack, lambda tensor: tensor):
            yield self

    def total(self) -> int:
        storages = {}
        for ref in self._saved:
            tensor = ref()
            if tensor is not None:
                storage = tensor.untyped_storage()
                if storage._cdata not in self._excluded:
                    storages[storage._cdata] = storage.nbytes()
        return sum(storages.values())


class _KernelSaves(torch.autograd.Function):
    """Saves what an attention kernel saves; ``extra`` are the (shape, dtype) of the new tensors it keeps."""

    @staticmethod
    def forward(ctx, query, key, value, keeps_inputs: bool, extra: list):  # (B, H, T, D); k/v GQA heads
        batch, heads, tokens, dim = query.shape
        # laid out (B, T, H, D) as the kernels return it, so `.transpose(1, 2).contiguous()` copies nothing
        out = query.new_empty(batch, tokens, heads, value.shape[-1]).transpose(1, 2)
        saved = [query.new_empty(shape, dtype=dtype) for shape, dtype in extra]
        ctx.save_for_backward(*(saved + ([query, key, value, out] if keeps_inputs else [])))
        return out

    @staticmethod
    def backward(ctx, grad):  # never run: the meta pass only counts what is saved
        raise RuntimeError("the planner's attention stand-in has no backward")


@dataclass(frozen=True)
class PackedRows:
    """A packed row's sequences: a prompt of ``prompt`` tokens, then ``completions`` of ``completion`` each."""

    prompt: int
    completions: int
    completion: int
    kernel: str  # "flash" (flash_attn_varlen_func) or "sdpa" (CPU: two padded sdpa batches)


def _packed_saves(rows: int, heads: int, kv_heads: int, dim: int, dtype, packed: PackedRows) -> list:
    """What crowdvlm's packed attention keeps per layer (crowdvlm.train.sharing.packed_attention).

    flash: the gathered queries, keys and values (each completion's keys are ``[prompt ; itself]``, so the
    prompt's keys and values appear G + 1 times), the output and a float32 log-sum-exp. sdpa (as measured on
    CPU): the gathered queries, then per padded batch (the prompts; the completions) its gathered rows, the
    batch with keys and values repeated to every query head, the output, the log-sum-exp and the float32 mask
    the CPU kernel makes of the boolean one.
    """
    f32 = torch.float32
    p, g, c = packed.prompt, packed.completions, packed.completion
    if packed.kernel == "flash":
        queries, keys = rows * (p + g * c), rows * (p + g * (p + c))
        return [
            ((queries, heads, dim), dtype),
            ((keys, kv_heads, dim), dtype),
            ((keys, kv_heads, dim), dtype),
            ((queries, heads, dim), dtype),
            ((heads, queries), f32),
        ]
    saves = [((rows * (p + g * c), heads, dim), dtype)]  # the gathered queries
    for sequences, q_len, k_len in ((rows, p, p), (rows * g, c, p + c)):
        saves += [  # each batch's gathered rows, then the padded batch sdpa keeps
            ((sequences * q_len, heads, dim), dtype),
            ((sequences * k_len, kv_heads, dim), dtype),
            ((sequences * k_len, kv_heads, dim), dtype),
            ((sequences, heads, q_len, dim), dtype),
            ((sequences, heads, k_len, dim), dtype),
            ((sequences, heads, k_len, dim), dtype),
            ((sequences, heads, q_len, dim), dtype),
            ((sequences, heads, q_len), f32),
            ((sequences, 1, q_len, k_len), f32),
        ]
    return saves


def _flash_like_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    packed = kwargs.get(LAYOUT_KWARG)
    batch, heads, tokens, dim = query.shape
    if packed is not None:
        extra = _packed_saves(batch, heads, key.shape[1], dim, query.dtype, packed)
        out = _KernelSaves.apply(query, key, value, False, extra)
        return out.transpose(1, 2).contiguous(), None  # the scattered output, kept by o_proj
    extra = [((batch, heads, tokens), torch.float32)]  # the log-sum-exp
    if isinstance(attention_mask, torch.Tensor) and attention_mask.dim() == 4:
        extra.append((tuple(attention_mask.shape), torch.float32))  # CPU sdpa's float copy of a boolean mask
    out = _KernelSaves.apply(query, key, value, True, extra)
    return out.transpose(1, 2).contiguous(), None


def register_attention() -> str:
    """Register the stand-in kernel with transformers (idempotent); returns its ``attn_implementation`` name."""
    from transformers import AttentionInterface

    AttentionInterface.register(ATTENTION_NAME, _flash_like_attention)
    return ATTENTION_NAME


def route_packed_calls(model) -> None:
    """Route the packed calls of ``model``'s linear-attention layers to its family's packer, as the training pass
    does (``packed_attention.install_linear_attention_packer``); calls without a layout run the stock forward."""
    family = family_of(model)
    if family is not None and family.linear_attention_packer is not None:
        install_linear_attention_packer(model, family.linear_attention_packer)


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
    packed: PackedRows | None = None


def _packed_arguments(model, rows: int, packed: PackedRows) -> dict:
    """The packed forward's extra arguments, as the training pass gives them (``sharing/packing.py``).

    Every call of an attention layer carries the layout (the stand-in kernel reads it as :class:`PackedRows`); a
    family with linear-attention layers also gets the training pass's per-layer-type mask, those layers' layout
    (:class:`~crowdvlm.train.sharing.linear_attention.PackedRecurrence`), which its packer runs
    (:func:`route_packed_calls`).
    """
    arguments: dict = {LAYOUT_KWARG: packed}
    family = family_of(model)
    if family is not None and family.linear_attention_packer is not None:
        layout = PackedRecurrence((packed.prompt,) * rows, (packed.completions,) * rows, packed.completion)
        arguments["attention_mask"] = layer_type_masks(None, layout, family.linear_attention)
    return arguments


def _text_pass_bytes(model, shape: PassShape, dtype: torch.dtype, kernel: str) -> int:
    text = model.model.language_model
    config = text.config
    rows, tokens = shape.text_rows, shape.text_tokens
    embeds = torch.empty(rows, tokens, config.hidden_size, device="meta", dtype=dtype, requires_grad=True)
    position_rows = 4 if config.model_type.startswith("qwen3_5") else 3
    positions = torch.zeros(position_rows, rows, tokens, device="meta", dtype=torch.long)
    packing = {}
    if shape.packed is not None:
        packing = _packed_arguments(model, rows, dataclasses.replace(
            shape.packed, kernel="sdpa" if kernel == "cpu" else "flash"
        ))  # fmt: skip
    counter = SavedBytes(exclude=model)
    with counter.counting():
        output = text(inputs_embeds=embeds, position_ids=positions, **packing)
    saved = counter.total()
    del output
    # input ids (int64) and the image-placeholder mask of the embedding step; TRL's fused LM head keeps the
    # scored positions' hidden states and a float32 log-prob, log-sum-exp and label per scored token.
    embedding = rows * tokens * (8 + 1)
    head = shape.scored_tokens * (config.hidden_size * dtype.itemsize + 3 * 4)
    return saved + embedding + head


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
    embed_bytes = counter.total()
    block = SavedBytes(exclude=model)
    with block.counting():
        block_output = visual.blocks[0](
            hidden,
            cu_seqlens=cu_seqlens,
            max_seqlen=shape.patches_per_image,
            position_embeddings=(cos, cos),
        )
    block_bytes = block.total()
    merger = SavedBytes(exclude=model)
    with merger.counting():
        merged = [visual.merger(hidden)] + [
            deepstack(hidden) for deepstack in getattr(visual, "deepstack_merger_list", [])
        ]
    merger_bytes = merger.total()
    del block_output, merged
    total = embed_bytes + block_bytes * config.depth + merger_bytes
    return total, block_bytes, patches * config.hidden_size * dtype.itemsize


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
        kernel: ``flash`` (GPU: flash-attention, PyTorch's fused kernels; crowdvlm's packed rows through
            ``flash_attn_varlen_func``) or ``cpu`` (crowdvlm's packed rows through its two padded sdpa batches).
    """
    vision_total, block, block_input = _vision_pass_bytes(model, shape, dtype)
    if not checkpointing:
        return _text_pass_bytes(model, shape, dtype, kernel) + vision_total
    config = model.model.language_model.config
    layers = config.num_hidden_layers
    layer_input = shape.text_rows * shape.text_tokens * config.hidden_size * dtype.itemsize
    base, per_type = _layer_bytes(model, shape, dtype, kernel)
    # every layer keeps its input instead of its share; the layer being recomputed adds its full share once
    text_kept = base + layers * layer_input + max(per_type)
    if not vision_total:
        return text_kept
    depth = model.model.visual.config.depth
    vision_kept = vision_total - depth * block + depth * block_input + block
    return text_kept + vision_kept


def _layer_bytes(model, shape: PassShape, dtype: torch.dtype, kernel: str) -> tuple[int, list[int]]:
    """(the decoder pass's bytes outside its layers, one layer's bytes for each of its layer types).

    A layer's share is the difference of two passes over the first ``i`` and ``i + 1`` layers, at the first
    layer of each type (Qwen3.5 mixes Gated DeltaNet and attention layers: they keep different amounts). What
    every layer reads but none makes (the rotary tables) counts once, with the first layer that saves it.
    """
    text = model.model.language_model
    kinds = (getattr(text.config, "layer_types", None) or ["full_attention"])[: text.config.num_hidden_layers]
    firsts = sorted(kinds.index(kind) for kind in set(kinds))
    saved_layers = text.layers
    prefix = {}
    try:
        for count in sorted({0, *firsts, *(i + 1 for i in firsts)}):
            text.layers = saved_layers[:count]
            prefix[count] = _text_pass_bytes(model, shape, dtype, kernel)
    finally:
        text.layers = saved_layers
    return prefix[0], [prefix[i + 1] - prefix[i] for i in firsts]
