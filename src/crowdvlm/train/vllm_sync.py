"""GRPO with vLLM generating: a weight sync that vLLM's CPU build survives and that drops stale image features.

TRL 1.16.0's ``VLLMGeneration.sync_weights`` (colocate mode) calls the vLLM model's ``load_weights`` once per
parameter and then resets vLLM's prefix cache. Two things go wrong with vision-language models:

- **Stale image features.** vLLM's encoder cache, keyed by the image's hash, is not reset: an image vLLM saw
  before the sync (in GRPO every image seen again, each epoch after the first; on GPUs too) gets vision
  features computed by the old weights while the language model runs the new ones, so the completions and the
  log-probs vLLM returns (TRL's importance-sampling correction uses them) are off.
- **Repacked weights.** After loading, vLLM's CPU build may hand a linear layer's weight to a packed kernel
  (oneDNN) and drop the parameter (``process_weights_after_loading``); a later ``load_weights`` into it then
  fails (``'Parameter' object has no attribute 'weight_loader'`` here, with bf16 on a 2-core AVX2 EPYC) or
  leaves old weights in place.

:class:`FreshVisionVLLMGeneration` replaces that one loop: the same parameters (TRL's ``_iter_named_params``:
PEFT merge, ZeRO-3/FSDP gathering) go through the model runner's ``reload_weights``, vLLM's in-place reload,
which restores each layer's loading layout, loads, and re-runs the layer's post-load processing; then the
prefix cache is reset as TRL does and the engine's encoder cache is dropped (``reset_encoder_cache``, vLLM's
call for "weights updated"). The runner's reload clears the worker's cached features but not the scheduler's
record of them: without the engine-level call the next request for a seen image fails ("Encoder cache miss").
:class:`VLLMSyncMixin` makes a ``GRPOTrainer`` subclass use it: TRL builds its ``VLLMGeneration`` inside
``GRPOTrainer.__init__`` (with the ``LLM`` engine), so the mixin re-classes that one object afterwards instead
of building a second engine. ``crowdvlm train grpo`` puts the mixin in front of ``GroupSharedGRPOTrainer``
(and of stock ``GRPOTrainer``) whenever ``use_vllm`` is set (:func:`crowdvlm.train.grpo.trainer_class`); the
trainer's log-prob passes, where the group sharing works, are untouched.

Server mode (``trl vllm-serve``) is left as TRL has it: its server exposes no encoder-cache reset, and its
weight sync needs CUDA, so it cannot be checked on the machines this is tested on; a warning says so once.
"""

from __future__ import annotations

import logging
from typing import Any

from trl.generation.vllm_generation import VLLMGeneration, empty_cache

logger = logging.getLogger(__name__)

TARGET_TRL_VERSION = "1.16.0"

__all__ = ["FreshVisionVLLMGeneration", "VLLMSyncMixin"]


class FreshVisionVLLMGeneration(VLLMGeneration):
    """TRL 1.16.0's ``VLLMGeneration`` whose colocated sync reloads through vLLM and drops its encoder cache."""

    def sync_weights(self) -> None:
        if self.mode != "colocate":
            super().sync_weights()
            if not getattr(self, "_warned_server", False):
                self._warned_server = True
                logger.warning(
                    "vLLM server mode: the server's encoder cache is not reset after a weight sync (TRL %s's "
                    "server has no such call); images seen before a sync reuse features from the old weights",
                    TARGET_TRL_VERSION,
                )
            return
        if self.enable_sleep_mode:  # as TRL 1.16.0: map the weights' memory back before writing into it
            empty_cache()
            self.llm.wake_up(tags=["weights"])
            self._llm_weights_sleeping = False
        runner = self.llm.llm_engine.model_executor.driver_worker.model_runner
        runner.reload_weights(weights_iterator=self._iter_named_params())  # TRL: load_weights per parameter
        self.llm.reset_prefix_cache()
        self.llm.llm_engine.reset_encoder_cache()  # scheduler and worker: no stale image features


class VLLMSyncMixin:
    """Put before a ``trl.GRPOTrainer`` subclass: with ``use_vllm`` it syncs with :class:`FreshVisionVLLMGeneration`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        generation = getattr(self, "vllm_generation", None)
        if getattr(self, "use_vllm", False) and isinstance(generation, VLLMGeneration):
            # Only a method is added: the object built by TRL (and its engine) stays as it is.
            generation.__class__ = FreshVisionVLLMGeneration
