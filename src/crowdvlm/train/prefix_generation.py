"""Sample G completions per prompt with one prefill per distinct prompt (transformers 5.24 ``generate``).

Stock GRPO generation prefills every row, so a prompt repeated G times (image tokens included) is encoded G
times. Here each distinct prompt runs one forward over all its tokens but the last, filling a ``DynamicCache``;
the cache is then indexed out to the G rows and ``generate`` continues from it, feeding the last prompt token
itself. The first sampled token therefore comes out of ``generate``'s own logits processors and sampler, with
the same random draws as a stock call, and the rows' key/value states are those a full prefill computes.

Models that keep prompt-dependent state outside the cache (the Qwen-VL family caches ``rope_deltas``, the
offset of text positions after the image grid) get that state indexed out to the G rows as well.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch

logger = logging.getLogger(__name__)


def _base_model(model: Any) -> Any:
    return model.get_base_model() if hasattr(model, "get_base_model") else model  # PEFT


def expand_cached_prompt_state(model: Any, index: torch.Tensor, num_prompts: int) -> int:
    """Index model-held per-prompt state (``rope_deltas``) from the distinct prompts out to all rows.

    Args:
        model: the model that ran the prefill (plain or PEFT).
        index: ``(rows,)`` distinct-prompt index of every row.
        num_prompts: number of distinct prompts in the prefill batch.

    Returns:
        How many state tensors were expanded (0 for models that keep none).
    """
    base = _base_model(model)
    expanded = 0
    for module in (base, getattr(base, "model", None)):
        deltas = getattr(module, "rope_deltas", None)
        if isinstance(deltas, torch.Tensor) and deltas.shape[0] == num_prompts:
            module.rope_deltas = deltas[index.to(deltas.device)]
            expanded += 1
    return expanded


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
        ValueError: a prompt whose last token is not text, or a cache that cannot be indexed by batch row.
    """
    from transformers import DynamicCache

    token_inputs = token_inputs or {}
    prefill_inputs = prefill_inputs or {}
    num_prompts, length = input_ids.shape
    if length < 2:
        raise ValueError(f"shared-prefix generation needs prompts of at least 2 tokens, got {length}")
    for key, value in token_inputs.items():
        if value.shape != input_ids.shape:
            raise ValueError(f"{key} has shape {tuple(value.shape)}, expected {tuple(input_ids.shape)}")
        if key == "mm_token_type_ids" and bool(value[:, -1].any()):
            raise ValueError(
                "the last prompt token is an image/video token; it must be text to prefill the rest"
            )
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
    cache = prefill.cache if hasattr(prefill, "cache") else prefill.past_key_values
    if not isinstance(cache, DynamicCache):
        raise ValueError(
            f"prefill returned a {type(cache).__name__}; only DynamicCache can be indexed by row"
        )

    # 2. One cache row (and rope offset) per output row: (P, heads, L-1, d) -> (rows, heads, L-1, d).
    cache.batch_select_indices(index)
    expand_cached_prompt_state(model, index, num_prompts)

    # 3. Continue: generate sees L prompt tokens of which L-1 are cached, so it feeds only the last one.
    return model.generate(
        input_ids=input_ids[index],
        attention_mask=attention_mask[index],
        **{key: value[index] for key, value in token_inputs.items()},
        cache=cache,
        generation_config=generation_config,
    )
