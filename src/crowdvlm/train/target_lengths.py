"""SFT targets longer than the model takes, found before the model loads.

A pointing target lists every point (``{"point_2d": [x, y], "label": "object"}`` each, about 40 tokens): a
3,000-head crowd is over 100,000 tokens, and real crowd sets go past 12,000 heads, while Qwen2.5-VL takes
32,768. Such a step never finishes, or runs out of memory hours in. So every target is tokenized once, before
the model loads, and compared with the model's limit: the smallest of ``max_position_embeddings`` (the
model's config), the tokenizer's ``model_max_length`` and the run's ``max_length`` when set. A target past
it refuses the run (naming the longest, in tokens, against the limit), or with ``skip_long_targets`` its row
is left out and counted. The prompt (image tokens included) needs room too, so this is the least a row
must pass, not a guarantee that it fits.
"""

from __future__ import annotations

import logging

from crowdvlm.train.errors import ConfigError

logger = logging.getLogger(__name__)

_UNSET_LENGTH = 10**9  # transformers stores "no limit" as a huge model_max_length (1e30)


def model_token_limit(model_name_or_path: str, tokenizer, max_length: int | None) -> tuple[int, str]:
    """``(limit, where it comes from)``: the fewest tokens any of config, tokenizer and ``max_length`` allow.

    Raises:
        ConfigError: no limit can be read at all (neither the config nor the tokenizer states one).
    """
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_name_or_path)
    limits = []
    for part in (getattr(config, "text_config", None), config):  # VLMs keep it in text_config
        value = getattr(part, "max_position_embeddings", None)
        if isinstance(value, int) and value > 0:
            limits.append((value, "max_position_embeddings of the model's config"))
            break
    value = getattr(tokenizer, "model_max_length", None)
    if isinstance(value, int) and 0 < value < _UNSET_LENGTH:
        limits.append((value, "model_max_length of the tokenizer"))
    if max_length is not None:
        limits.append((int(max_length), "max_length"))
    if not limits:
        raise ConfigError(
            f"{model_name_or_path}: neither max_position_embeddings nor model_max_length says how many tokens "
            "the model takes; set max_length"
        )
    return min(limits)


def _target_text(completion) -> str:
    """The text of a ``completion`` column entry (one assistant turn of text parts)."""
    return "".join(
        part.get("text") or ""
        for turn in completion
        for part in turn["content"]
        if part.get("type") == "text"
    )


def fit_targets(dataset, tokenizer, limit: tuple[int, str], *, skip: bool):
    """``dataset`` if every ``completion`` fits ``limit``; else refuse, or (``skip``) leave those rows out.

    Args:
        dataset: rows with ``completion`` and ``id`` (and ``points`` for point runs).
        tokenizer: the run's tokenizer.
        limit: from :func:`model_token_limit`.
        skip: leave the rows that do not fit out (logged, counted) instead of refusing.

    Raises:
        ConfigError: a target does not fit (without ``skip``), or none does.
    """
    texts = [_target_text(c) for c in dataset["completion"]]
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    tokens, source = limit
    too_long = [i for i, n in enumerate(lengths) if n > tokens]
    if not too_long:
        return dataset
    worst = max(too_long, key=lengths.__getitem__)
    points = f", {len(dataset[worst]['points'])} points" if "points" in dataset.column_names else ""
    what = (
        f"{len(too_long)} of {len(lengths)} rows have an SFT target longer than the model takes: the longest "
        f"(id {dataset[worst]['id']}{points}) is {lengths[worst]} tokens; the limit is {tokens} ({source})"
    )
    if not skip or len(too_long) == len(lengths):
        raise ConfigError(
            f"dataset: {what}; set skip_long_targets: true to leave them out, or use images with fewer objects "
            "(crop dense crowds into tiles)"
        )
    logger.warning("leaving out %s", what.replace(" rows have", " rows, which have", 1))
    drop = set(too_long)
    return dataset.select([i for i in range(len(lengths)) if i not in drop])
