"""Why a part of group sharing ran TRL's code instead: one enum value per reason, with the detail for the log.

Every ``*_unsupported_reason`` function of this package returns a :class:`Fallback` (or ``None`` when the part
can be shared), and :class:`~crowdvlm.train.sharing.trainer.GroupSharedGRPOTrainer` decides what to do from
``fallback.reason`` alone; the ``detail`` text is only ever logged.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class FallbackReason(enum.Enum):
    """What stops a part of group sharing (the value is a short description for logs and JSON)."""

    # Not fallbacks: nothing is logged for these.
    DISABLED = "switched off"
    NO_IMAGES = "no images in the batch"
    NO_PROMPT_REPEATS = "no prompt repeats in the batch"
    # Fixed by the model, its config or the run's settings: known before the first step.
    MODEL_INTERFACE = "the model lacks an interface sharing needs"
    MODEL_FAMILY = "the model family cannot share this part"
    ATTENTION_LAYERS = "attention layers that cannot be packed"
    FEATURE_FIELDS = "image features that cannot be repeated per image"
    PROCESSOR_INPUTS = "processor inputs of unknown layout"
    CACHE = "a generation cache that cannot be indexed by row"
    GENERATION_BACKEND = "vLLM / continuous batching generate themselves"
    TOOLS = "tool-calling rollouts"
    DECODING = "static caches and beam search"
    FSDP = "FSDP shards the vision tower"
    AUX_LOSS = "the MoE load-balancing loss"
    # Fixed by one batch: the next batch may share again.
    UNSUPPORTED_INPUTS = "inputs of unknown layout"
    IMAGE_LAYOUT = "pixel_values not laid out by image_grid_thw"
    PROMPT_SHAPE = "a prompt too short or ending in an image token"
    PROCESSOR_OUTPUTS = "processor outputs of unknown layout"

    @property
    def silent(self) -> bool:
        """Whether this reason is expected and logged by no one (a switch, or nothing to share)."""
        return self in _SILENT


_SILENT = frozenset({FallbackReason.DISABLED, FallbackReason.NO_IMAGES, FallbackReason.NO_PROMPT_REPEATS})


@dataclass(frozen=True)
class Fallback:
    """A reason and the detail that says what to change (the detail is for the log only).

    >>> str(Fallback(FallbackReason.TOOLS, "tool-calling rollouts"))
    'tool-calling rollouts'
    """

    reason: FallbackReason
    detail: str

    def __str__(self) -> str:
        return self.detail


class SharingSkipped(Exception):
    """This batch cannot be shared (the next one may be); carries the :class:`Fallback`."""

    def __init__(self, fallback: Fallback) -> None:
        super().__init__(fallback.detail)
        self.fallback = fallback
