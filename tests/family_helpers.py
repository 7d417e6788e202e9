"""The per-family comparison trainer and which families pack (train/sharing/families.py), for the family tests."""

from __future__ import annotations

from crowdvlm.train.sharing.fallbacks import FallbackReason
from crowdvlm.train.sharing.families import FAMILIES as SHARING
from grpo_helpers import one_step_trainer, two_question_dataset

G = 4  # completions per prompt

PROMPTS = 2  # distinct prompts per batch


def family_trainer(cls, model_dir, tmp_path, *, with_images=True, **config):
    dataset = two_question_dataset(PROMPTS, with_images=with_images)
    config = {"learning_rate": 1.0, "optim": "sgd", **config}
    return one_step_trainer(cls, model_dir, tmp_path, dataset, generations=G, **config)


PACKING_FALLBACK = ("prefix", FallbackReason.MODEL_FAMILY)


def packs(family: str) -> bool:
    return SHARING[family].packing


def is_packing_fallback(family: str, message: str) -> bool:
    """Whether a logged warning is the packing fallback of a family that does not pack."""
    return not packs(family) and message.startswith("group sharing off for prefix (")
