"""Run each distinct prompt once per log-prob pass: one packed row per group, ``[prompt | c1 | ... | cG]``.

TRL 1.16.0's ``_get_per_token_logps_and_entropies`` runs the language model over G x (P + C) tokens per group
(the reference, old-policy and training passes alike); here it runs over (P - 1) + G x C. Each packed row holds
one distinct prompt and the completions drawn from it, and three things make it equal to the per-row path:

- the packed attention function (:mod:`crowdvlm.train.sharing.packed_attention`, on every attention kernel): a
  prompt token sees the prompt causally; completion i's tokens see the prompt and completion i causally, never
  another completion. The layout reaches it through the forward's ``packed_layout`` keyword;
- explicit ``(4, n, L)`` positions (text, t, h, w): the prompt's M-RoPE positions from the model's own
  ``get_rope_index`` on the prompt alone, and each completion's continuing from ``max(prompt positions) + 1`` on
  all three axes, the same for every i (the model computes positions itself only when none are given);
- the first completion token is predicted by the last prompt token. Each completion segment therefore starts
  with a copy of that token at that position (``[p_last, c_i[:-1]]`` predicting ``c_i``): the copy sees exactly
  what the original would, so its hidden state is the same, and every position keeps one label, which TRL's
  fused LM head (``shift_labels``) scores without shifting. That copy is why the prompt part holds P - 1 tokens.

The packed row goes in as ``input_ids`` with one copy of each prompt's images as ``mm_encoder_outputs`` (the
shared features of :mod:`crowdvlm.train.sharing.vision`), so the model places the image features, and Qwen3-VL
its deepstack features, itself: the vision tower runs once per group. An ``<|image_pad|>`` / ``<|video_pad|>``
sampled inside a completion would be counted as a placeholder, so it goes in as another id and the embedding
layer is made to return the real token's embedding (it stays a text token). Placeholders (and the
``mm_token_type_ids`` given to ``get_rope_index``) are read off the prompt tokens, not taken from TRL's
``mm_token_type_ids``, which come from the processor's padding side while TRL pads ``prompt_ids`` left
(trl #5785): with a right-padding processor the per-row path gets shorter prompts' image positions wrong; this
one does not. No KV cache is passed: under gradient checkpointing transformers drops a ``past_key_values`` in
training, and a layout-and-positions design uses every parameter exactly as the per-row forward does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

import torch

from crowdvlm.train.sharing.fallbacks import Fallback, FallbackReason, SharingSkipped
from crowdvlm.train.sharing.families import FAMILIES, base_model, family_of
from crowdvlm.train.sharing.linear_attention import PackedRecurrence, layer_type_masks
from crowdvlm.train.sharing.packed_attention import (
    LAYOUT_KWARG,
    check_packed_attention,
    install_packed_attention,
    packed_layout,
)
from crowdvlm.train.sharing.processing import group_rows
from crowdvlm.train.sharing.vision import UniqueImageFeatures, encoder_outputs_for


def rope_index_fn(model: Any) -> Callable | None:
    """The model's ``get_rope_index`` (on the model or its inner ``model``), or ``None``."""
    base = base_model(model)
    for owner in (base, getattr(base, "model", None)):
        fn = getattr(owner, "get_rope_index", None)
        if callable(fn):
            return fn
    return None


def prefix_unsupported_reason(
    model: Any, extra_inputs: dict[str, Any], compute_aux_loss: bool
) -> Fallback | None:
    """Why this model or configuration cannot pack prompts, or ``None`` when it can.

    Args:
        model: the unwrapped model (plain, or PEFT around a transformers model).
        extra_inputs: the other inputs of TRL's ``_get_per_token_logps_and_entropies``; only
            ``mm_token_type_ids`` may be set.
        compute_aux_loss: whether the MoE load-balancing loss is requested.
    """
    unexpected = sorted(k for k, v in extra_inputs.items() if v is not None and k != "mm_token_type_ids")
    if unexpected:
        return Fallback(FallbackReason.UNSUPPORTED_INPUTS, f"unsupported inputs {unexpected}")
    if compute_aux_loss:
        return Fallback(
            FallbackReason.AUX_LOSS, "the MoE load-balancing loss would be computed over packed rows"
        )
    config = getattr(model, "config", None)
    if config is None:
        return Fallback(FallbackReason.MODEL_INTERFACE, f"{type(model).__name__} has no config")
    family = family_of(model)
    if family is None or not family.packing:
        packed = ", ".join(name for name, f in FAMILIES.items() if f.packing)
        return Fallback(
            FallbackReason.MODEL_FAMILY,
            f"prompt packing is built for {packed} only, not {config.model_type!r} (train/sharing/families.py)",
        )
    text_config = config.get_text_config()
    layer_types = set(getattr(text_config, "layer_types", None) or ["full_attention"])
    packable_layers = {"full_attention"} | (
        set(family.linear_attention) if family.linear_attention_packer else set()
    )
    if getattr(text_config, "use_sliding_window", False) or layer_types - packable_layers:
        return Fallback(
            FallbackReason.ATTENTION_LAYERS,
            f"layers of type {sorted(layer_types - packable_layers) or ['sliding_window']} would ignore the packed layout",
        )
    if rope_index_fn(model) is None:
        return Fallback(
            FallbackReason.MODEL_INTERFACE,
            f"{type(base_model(model)).__name__} has no get_rope_index (only the Qwen-VL family is packed)",
        )
    if not callable(getattr(model, "get_input_embeddings", None)):
        return Fallback(FallbackReason.MODEL_INTERFACE, f"{type(model).__name__} has no get_input_embeddings")
    return None


@dataclass
class PackedRows:
    """One chunk of rows laid out as one packed row per distinct prompt.

    Attributes:
        input_ids: ``(n, L)`` packed tokens (``n`` distinct prompts).
        shift_labels: ``(n, L)`` the token each position predicts, ``-100`` where nothing is scored.
        position_ids: ``(4, n, L)`` positions: text, then the three M-RoPE axes (t, h, w).
        segments: ``(n, L)`` 0 for the prompt, i for completion i (from 1), -1 for padding.
        gather_index: ``(rows, C)`` flat index into an ``(n, L)`` output of each row's completion positions.
    """

    input_ids: torch.Tensor
    shift_labels: torch.Tensor
    position_ids: torch.Tensor
    segments: torch.Tensor
    gather_index: torch.Tensor


def row_keys(
    prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, image_keys: Sequence[tuple[int, ...]]
) -> list[tuple]:
    """A key per row, equal for rows with the same prompt tokens (padding aside) and the same images."""
    return [
        (tuple(ids[mask.bool()].tolist()), tuple(images))
        for ids, mask, images in zip(prompt_ids, prompt_mask, image_keys, strict=True)
    ]


def pack_rows(
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    inverse: Sequence[int],
    first: Sequence[int],
    prompt_positions: torch.Tensor,
    prompt_image_mask: torch.Tensor,
) -> PackedRows:
    """Lay out a chunk of rows as one packed row per distinct prompt.

    Args:
        prompt_ids, prompt_mask: ``(rows, P)``, left-padded as TRL pads prompts.
        completion_ids, completion_mask: ``(rows, C)``, right-padded.
        inverse: for each row, the index of its distinct prompt; ``first``: the first row of each.
        prompt_positions: ``(3, n, P)`` positions of the distinct prompts (``get_rope_index`` on them alone).
        prompt_image_mask: ``(n, P)`` image placeholder tokens of the distinct prompts.

    Raises:
        SharingSkipped: a prompt is empty or ends in an image token (its copy would need an image feature).
    """
    device = prompt_ids.device
    num_completions = completion_ids.size(1)
    ids_parts, label_parts, pos_parts, seg_parts = [], [], [], []
    gather = torch.zeros(len(inverse), num_completions, dtype=torch.long, device=device)
    members = [[r for r, g in enumerate(inverse) if g == u] for u in range(len(first))]
    for u, row in enumerate(first):
        valid = prompt_mask[row].bool()
        tokens, positions, images = (
            prompt_ids[row][valid],
            prompt_positions[:, u][:, valid],
            prompt_image_mask[u][valid],
        )
        if tokens.numel() == 0:
            raise SharingSkipped(Fallback(FallbackReason.PROMPT_SHAPE, "a prompt with no tokens"))
        if images[-1]:
            raise SharingSkipped(
                Fallback(FallbackReason.PROMPT_SHAPE, "a prompt that ends in an image token")
            )
        # Completion text positions continue after the prompt's largest position, on all three axes.
        start = positions.max() + 1
        text = start + torch.arange(num_completions - 1, device=device)
        segment_pos = torch.cat([positions[:, -1:], text.expand(3, -1)], dim=1)  # (3, C)
        # The text row (first of four) counts tokens: what a row of its own would hold at each position.
        prompt_text = torch.arange(tokens.numel(), device=device)
        segment_text = tokens.numel() - 1 + torch.arange(num_completions, device=device)
        positions = torch.cat([prompt_text[None], positions])  # (4, P)
        segment_pos = torch.cat([segment_text[None], segment_pos])  # (4, C)
        rows = members[u]
        seg_ids = [tokens[-1:].expand(len(rows), 1), completion_ids[rows, :-1]]
        labels = completion_ids[rows].masked_fill(completion_mask[rows] == 0, -100)
        prefix_len = tokens.numel() - 1
        ids_parts.append(torch.cat([tokens[:-1], torch.cat(seg_ids, dim=1).reshape(-1)]))
        label_parts.append(torch.cat([labels.new_full((prefix_len,), -100), labels.reshape(-1)]))
        pos_parts.append(torch.cat([positions[:, :-1], segment_pos.repeat(1, len(rows))], dim=1))
        segment = torch.arange(1, len(rows) + 1, device=device).repeat_interleave(num_completions)
        seg_parts.append(torch.cat([segment.new_zeros(prefix_len), segment]))
        for k, r in enumerate(rows):
            gather[r] = prefix_len + k * num_completions + torch.arange(num_completions, device=device)

    length = max(part.numel() for part in ids_parts)

    def right_pad(parts: list[torch.Tensor], value: int) -> torch.Tensor:
        return torch.stack(
            [torch.nn.functional.pad(p, (0, length - p.size(-1)), value=value) for p in parts], dim=-2
        )

    for r, u in enumerate(inverse):
        gather[r] += u * length
    return PackedRows(
        input_ids=right_pad(ids_parts, 0),
        shift_labels=right_pad(label_parts, -100),
        position_ids=right_pad(pos_parts, 0),
        segments=right_pad(seg_parts, -1),
        gather_index=gather,
    )


def media_token_ids(model: Any) -> list[int]:
    """The image and video placeholder ids of the model's config."""
    config = base_model(model).config
    return [i for i in (config.image_token_id, getattr(config, "video_token_id", None)) if i is not None]


@contextlib.contextmanager
def completion_media_as_text(model: Any, packed: PackedRows) -> Iterator[torch.Tensor]:
    """The packed ``input_ids`` to give the model, with completion-side image/video placeholders kept as text.

    A placeholder id sampled inside a completion would be taken for an image position (and its feature count
    would no longer match). Such tokens go in as another id and, for the block, the embedding layer returns the
    real tokens' embeddings for that tensor, so the completion sees exactly the token it sampled.
    """
    media = torch.isin(packed.input_ids, torch.tensor(media_token_ids(model), device=packed.input_ids.device))
    stray = media & (packed.segments > 0)
    if not bool(stray.any()):
        yield packed.input_ids
        return
    model_ids = packed.input_ids.masked_fill(stray, int(packed.input_ids[~media].flatten()[0]))
    real_ids = packed.input_ids

    def real_embeddings(module, args, output):
        return module.forward(real_ids) if args and args[0] is model_ids else output

    handle = base_model(model).get_input_embeddings().register_forward_hook(real_embeddings)
    try:
        yield model_ids
    finally:
        handle.remove()


def modality_types(model: Any, prompt_ids: torch.Tensor) -> torch.Tensor:
    """``mm_token_type_ids`` of prompts from their tokens: 1 for image placeholders, 2 for video, else 0."""
    config = base_model(model).config
    types = torch.zeros_like(prompt_ids)
    types[prompt_ids == config.image_token_id] = 1
    if getattr(config, "video_token_id", None) is not None:
        types[prompt_ids == config.video_token_id] = 2
    return types


def prompt_rope_positions(
    model: Any,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    mm_token_type_ids: torch.Tensor | None,
    image_grid_thw: torch.Tensor | None,
) -> torch.Tensor:
    """``(3, n, P)`` positions of the prompts alone, as the model's own ``get_rope_index`` gives them."""
    if image_grid_thw is None:
        positions = (prompt_mask.long().cumsum(-1) - 1).clamp(min=0)
        return positions[None].expand(3, -1, -1)
    positions, _ = rope_index_fn(model)(
        prompt_ids,
        mm_token_type_ids=mm_token_type_ids,
        image_grid_thw=image_grid_thw,
        attention_mask=prompt_mask,
    )
    return positions


def packed_logps_and_entropies(
    model: Any,
    unwrapped: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    logits_to_keep: int,
    batch_size: int | None,
    compute_entropy: bool,
    autocast: Callable[[], Any],
    features: UniqueImageFeatures | None = None,
    image_to_feature: Sequence[int] | None = None,
    image_grid_thw: torch.Tensor | None = None,
    num_images: Sequence[int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, None]:
    """TRL 1.16.0's per-token log-probs (and entropies) with each chunk's distinct prompts run once.

    Same chunks as TRL's loop (``batch_size`` rows each, one model call per chunk, so every rank makes the same
    calls); inside a chunk, rows with equal prompt tokens and images share one packed row.

    Args:
        model: the (possibly wrapped) model called for the forward; ``unwrapped``: the same model unwrapped.
        input_ids, attention_mask: ``(B, P + C)``, prompts left-padded, completions right-padded.
        logits_to_keep: C, the completion width.
        features, image_to_feature: the shared vision features (:func:`crowdvlm.train.sharing.vision.
            encode_unique_images`) and, for each image of the batch, its index in ``features``; ``None``
            without images.
        image_grid_thw, num_images: the batch's image grids and the number of images of each row.

    Returns:
        ``(logps, entropies, None)`` shaped ``(B, C)`` as TRL's method returns them (zero where not scored).

    Raises:
        SharingSkipped: the batch cannot be packed, or no prompt repeats in any chunk (nothing to share).
    """
    has_images = features is not None
    rows, width = input_ids.shape
    batch_size = batch_size or rows
    prompt_width = width - logits_to_keep
    image_start = [0, *accumulate(num_images)] if has_images else [0] * (rows + 1)
    # Rows show the same images when their images map to the same distinct features.
    image_keys = [
        tuple(image_to_feature[image_start[i] : image_start[i + 1]]) if has_images else ()
        for i in range(rows)
    ]

    chunks = []
    for start in range(0, rows, batch_size):
        end = min(start + batch_size, rows)
        keys = row_keys(
            input_ids[start:end, :prompt_width],
            attention_mask[start:end, :prompt_width],
            image_keys[start:end],
        )
        chunks.append((start, end, group_rows(keys)))
    if not any(groups.has_duplicates for *_, groups in chunks):
        raise SharingSkipped(Fallback(FallbackReason.NO_PROMPT_REPEATS, "no prompt repeats in the batch"))

    install_packed_attention(unwrapped)
    check_packed_attention(unwrapped)  # no attention module may run a packed row as one sequence
    family = family_of(unwrapped)
    all_logps, all_entropies = [], []
    for start, end, groups in chunks:
        firsts = [start + i for i in groups.first]
        prompt_ids, prompt_mask = input_ids[firsts, :prompt_width], attention_mask[firsts, :prompt_width]
        # Placeholders are read off the prompt tokens: TRL pads prompt_ids left but takes mm_token_type_ids
        # from the processor, which may pad right, so the given types can sit a few tokens off (trl #5785).
        mm_types = modality_types(unwrapped, prompt_ids) if has_images else None
        own_images = [j for i in firsts for j in range(image_start[i], image_start[i + 1])]
        grids = image_grid_thw[own_images] if has_images and own_images else None
        positions = prompt_rope_positions(unwrapped, prompt_ids, prompt_mask, mm_types, grids)
        image_tokens = (
            mm_types == 1 if mm_types is not None else torch.zeros_like(prompt_mask, dtype=torch.bool)
        )
        packed = pack_rows(
            input_ids[start:end, :prompt_width],
            attention_mask[start:end, :prompt_width],
            input_ids[start:end, prompt_width:],
            attention_mask[start:end, prompt_width:],
            groups.inverse,
            groups.first,
            positions,
            image_tokens,
        )
        image_inputs = (
            {"mm_encoder_outputs": encoder_outputs_for(features, [image_to_feature[j] for j in own_images])}
            if grids is not None
            else {}
        )  # one copy of each prompt's images per packed row
        if family.linear_attention_packer is not None:  # the recurrent layers get the layout as their mask
            layout = PackedRecurrence.from_segments(packed.segments, logits_to_keep)
            image_inputs["attention_mask"] = layer_type_masks(None, layout, family.linear_attention)
        with autocast(), completion_media_as_text(unwrapped, packed) as model_ids:
            outputs = model(
                input_ids=model_ids,
                position_ids=packed.position_ids,
                shift_labels=packed.shift_labels,
                fused_lm_head=True,
                **image_inputs,
                **{LAYOUT_KWARG: packed_layout(packed.segments)},
            )
        all_logps.append(outputs.log_probs.reshape(-1)[packed.gather_index])
        if compute_entropy:
            all_entropies.append(outputs.entropy.reshape(-1)[packed.gather_index])

    logps = torch.cat(all_logps, dim=0)
    entropies = torch.cat(all_entropies, dim=0) if compute_entropy else None
    return logps, entropies, None
