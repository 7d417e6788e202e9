"""Sample G completions per prompt with one prefill per distinct prompt (transformers 5.24 ``generate``).

Stock GRPO generation prefills every row, so a prompt repeated G times (image tokens included) is encoded G
times. Here each distinct prompt runs one forward over all its tokens but the last, filling a ``DynamicCache``;
the cache is then indexed out to the G rows and ``generate`` continues from it, feeding the last prompt token
itself. The first sampled token therefore comes out of ``generate``'s own logits processors and sampler, with
the same random draws as a stock call, and the rows' key/value states are those a full prefill computes.

Models that keep prompt-dependent state outside the cache (the Qwen-VL family caches ``rope_deltas``, the
offset of text positions after the image grid) get that state indexed out to the G rows as well.

Hybrid models (Qwen3.5: gated delta-net linear attention beside full attention) fill a ``DynamicCache`` whose
linear-attention layers hold a convolution state and a recurrent state per row instead of keys and values;
those are indexed along the batch too (the layer's own ``reorder_cache``, beam search's row gather). Whether
a model's cache can be indexed is read from its config before any work (:func:`prefill_unsupported_reason`),
and so are the per-batch conditions (:func:`batch_unsupported_reason`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from crowdvlm.train.sharing.fallbacks import Fallback, FallbackReason
from crowdvlm.train.sharing.families import base_model


def expand_cached_prompt_state(model: Any, index: torch.Tensor, num_prompts: int) -> int:
    """Index model-held per-prompt state (``rope_deltas``) from the distinct prompts out to all rows.

    Args:
        model: the model that ran the prefill (plain or PEFT).
        index: ``(rows,)`` distinct-prompt index of every row.
        num_prompts: number of distinct prompts in the prefill batch.

    Returns:
        How many state tensors were expanded (0 for models that keep none).
    """
    base = base_model(model)
    expanded = 0
    for module in (base, getattr(base, "model", None)):
        deltas = getattr(module, "rope_deltas", None)
        if isinstance(deltas, torch.Tensor) and deltas.shape[0] == num_prompts:
            module.rope_deltas = deltas[index.to(deltas.device)]
            expanded += 1
    return expanded


def _layer_classes(model: Any) -> dict[str, type]:
    """Layer type -> the cache-layer class a ``DynamicCache`` built for this model's decoder will hold."""
    from transformers.cache_utils import DYNAMIC_LAYER_TYPE_MAPPING, get_layer_types_and_kwargs

    config = base_model(model).config.get_text_config(decoder=True)
    layer_types, _ = get_layer_types_and_kwargs(config)
    return {t: DYNAMIC_LAYER_TYPE_MAPPING.get(t) for t in layer_types}


def _selects_rows(layer_class: type | None) -> bool:
    from transformers.cache_utils import LinearAttentionCacheLayerMixin

    if layer_class is None:
        return False
    if issubclass(layer_class, LinearAttentionCacheLayerMixin):
        return True  # reorder_cache gathers conv / recurrent (and, for hybrids, key/value) rows
    return callable(getattr(layer_class, "batch_select_indices", None))


def prefill_unsupported_reason(model: Any) -> Fallback | None:
    """Why this model's generation cache cannot be prefilled once and indexed out to rows, or None when it can.

    Read from the model class and config alone, so it is known before the first generation.
    """
    base = base_model(model)
    supports_dynamic = getattr(type(base), "_supports_default_dynamic_cache", None)
    if supports_dynamic is None or not supports_dynamic():
        return Fallback(FallbackReason.CACHE, f"{type(base).__name__} does not generate with a DynamicCache")
    if getattr(base.config, "is_encoder_decoder", False):
        return Fallback(FallbackReason.CACHE, "encoder-decoder caches are not shared")
    unsupported = sorted(t for t, cls in _layer_classes(model).items() if not _selects_rows(cls))
    if unsupported:
        return Fallback(FallbackReason.CACHE, f"cache layers of type {unsupported} cannot be indexed by row")
    return None


def batch_unsupported_reason(
    prompt_lengths: Sequence[int], token_inputs: dict[str, torch.Tensor] | None = None
) -> Fallback | None:
    """Why this batch's prompts cannot share a prefill (the next batch may), or None when they can.

    Args:
        prompt_lengths: the unpadded length of every distinct prompt.
        token_inputs: per-token inputs of the left-padded prompts (``mm_token_type_ids`` marks image tokens).
    """
    if min(prompt_lengths, default=0) < 2:
        return Fallback(
            FallbackReason.PROMPT_SHAPE,
            "a prompt shorter than 2 tokens has nothing to prefill before its last token",
        )
    types = (token_inputs or {}).get("mm_token_type_ids")
    if types is not None and bool(types[:, -1].any()):
        return Fallback(
            FallbackReason.PROMPT_SHAPE, "a prompt ends in an image/video token; its last token must be text"
        )
    return None


def select_cache_rows(cache: Any, index: torch.Tensor) -> None:
    """Replace every layer's rows by ``rows[index]`` (repeats allowed), in place, for any layer kind."""
    from transformers.cache_utils import LinearAttentionCacheLayerMixin

    for layer in cache.layers:
        if isinstance(layer, LinearAttentionCacheLayerMixin):
            layer.reorder_cache(index)
        else:
            layer.batch_select_indices(index)


@torch.no_grad()
def generate_with_shared_prefix(
    model: Any,
    generation_config: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    row_to_prompt: Sequence[int],
    token_inputs: dict[str, torch.Tensor] | None = None,
    prefill_inputs: dict[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Generate one completion per row, prefilling each distinct prompt once.

    Args:
        model: an unwrapped generative model (plain or PEFT) in eval/no-grad use.
        generation_config: passed to ``model.generate``.
        input_ids: ``(P, L)`` left-padded distinct prompts.
        attention_mask: ``(P, L)``.
        row_to_prompt: for each output row, the index of its prompt in ``input_ids``.
        token_inputs: per-token inputs aligned with ``input_ids`` (``mm_token_type_ids``, ``token_type_ids``),
            ``(P, L)`` each; given to the prefill and, indexed to the rows, to ``generate``.
        prefill_inputs: inputs only the prefill needs (``pixel_values``, ``image_grid_thw``).

    Returns:
        ``(rows, L + new_tokens)``: each row's prompt followed by its sampled completion, as ``generate``
        returns it for the same rows.

    Raises:
        ValueError: prompts that :func:`batch_unsupported_reason` refuses, or a cache other than the
            ``DynamicCache`` that :func:`prefill_unsupported_reason` accepted.
    """
    from transformers import DynamicCache

    token_inputs = token_inputs or {}
    prefill_inputs = prefill_inputs or {}
    num_prompts = input_ids.shape[0]
    for key, value in token_inputs.items():
        if value.shape != input_ids.shape:
            raise ValueError(f"{key} has shape {tuple(value.shape)}, expected {tuple(input_ids.shape)}")
    reason = batch_unsupported_reason(attention_mask.sum(dim=1).tolist(), token_inputs)
    if reason is not None:
        raise ValueError(str(reason))
    index = torch.as_tensor(list(row_to_prompt), dtype=torch.long, device=input_ids.device)

    # 1. Prefill the distinct prompts, all tokens but the last (left padding keeps each row's last token last).
    prefill = model(
        input_ids=input_ids[:, :-1],
        attention_mask=attention_mask[:, :-1],
        **{key: value[:, :-1] for key, value in token_inputs.items()},
        **prefill_inputs,
        use_cache=True,
        logits_to_keep=1,
    )
    # transformers 5.24 names the cache `cache` (outputs and generate's argument); 5.19 `past_key_values`.
    cache_name = "cache" if hasattr(prefill, "cache") else "past_key_values"
    cache = getattr(prefill, cache_name)
    if not isinstance(cache, DynamicCache):
        raise ValueError(
            f"prefill returned a {type(cache).__name__}; only DynamicCache can be indexed by row"
        )

    # 2. One cache row (and rope offset) per output row: keys/values (P, heads, L-1, d) -> (rows, heads, L-1, d);
    # linear-attention conv (P, channels, kernel) and recurrent (P, heads, dk, dv) states likewise.
    select_cache_rows(cache, index)
    expand_cached_prompt_state(model, index, num_prompts)

    # 3. Continue: generate sees L prompt tokens of which L-1 are cached, so it feeds only the last one.
    return model.generate(
        input_ids=input_ids[index],
        attention_mask=attention_mask[index],
        **{key: value[index] for key, value in token_inputs.items()},
        **{cache_name: cache},
        generation_config=generation_config,
    )
