"""GRPO with vLLM generating: each weight sync also drops vLLM's encoder cache (trl 1.16.0).

TRL 1.16.0's ``VLLMGeneration.sync_weights`` loads every parameter into the colocated vLLM and then resets
vLLM's prefix cache, but not its encoder cache. vLLM keys that cache by the image's hash, so an image it saw
before the sync (in GRPO every image seen again, each epoch after the first) gets vision features computed by
the old weights while the language model runs the new ones: the completions and the log-probs vLLM returns
(used for TRL's importance-sampling correction) are off. ``llm.llm_engine.reset_encoder_cache()`` is vLLM's
call for exactly this ("when weights are updated"); TRL never makes it.

:class:`FreshVisionVLLMGeneration` extends TRL's sync at its one point, ``sync_weights``: TRL's code, then the
encoder cache is dropped. :class:`VLLMSyncMixin` makes a ``GRPOTrainer`` subclass use it: TRL builds its
``VLLMGeneration`` inside ``GRPOTrainer.__init__`` (with the ``LLM`` engine), so the mixin re-classes that one
object afterwards instead of building a second engine. ``crowdvlm train grpo`` puts the mixin in front of
``GroupSharedGRPOTrainer`` (and of stock ``GRPOTrainer``) whenever ``use_vllm`` is set
(:func:`crowdvlm.train.grpo.trainer_class`); the trainer's log-prob passes, where the group sharing works, are
untouched.

Server mode (``trl vllm-serve``) is left as TRL has it: its server exposes no encoder-cache reset, and its
weight sync needs CUDA, so it cannot be checked on the machines this is tested on; a warning says so once.
"""

from __future__ import annotations

import logging
from typing import Any

from trl.generation.vllm_generation import VLLMGeneration

logger = logging.getLogger(__name__)

TARGET_TRL_VERSION = "1.16.0"

__all__ = ["FreshVisionVLLMGeneration", "VLLMSyncMixin", "drop_encoder_cache"]


def drop_encoder_cache(generation: VLLMGeneration) -> bool:
    """Drop the vision features the colocated vLLM has cached; ``False`` where it cannot (server mode)."""
    if generation.mode != "colocate":
        return False
    generation.llm.llm_engine.reset_encoder_cache()
    return True


class FreshVisionVLLMGeneration(VLLMGeneration):
    """TRL 1.16.0's ``VLLMGeneration`` whose weight sync also empties vLLM's encoder cache (colocate mode)."""

    def sync_weights(self) -> None:
        super().sync_weights()
        if not drop_encoder_cache(self) and not getattr(self, "_warned_server", False):
            self._warned_server = True
            logger.warning(
                "vLLM server mode: the server's encoder cache is not reset after a weight sync (TRL %s's "
                "server has no such call); images seen before a sync reuse features from the old weights",
                TARGET_TRL_VERSION,
            )


class VLLMSyncMixin:
    """Put before a ``trl.GRPOTrainer`` subclass: with ``use_vllm`` its syncs drop vLLM's encoder cache."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        generation = getattr(self, "vllm_generation", None)
        if getattr(self, "use_vllm", False) and isinstance(generation, VLLMGeneration):
            # Only a method is added: the object built by TRL (and its engine) stays as it is.
            generation.__class__ = FreshVisionVLLMGeneration
