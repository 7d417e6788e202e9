"""GRPO that encodes each image once per group and runs each prompt once, on trl 1.16.0.

TRL's ``RepeatSampler`` gives G identical rows per prompt, and stock ``GRPOTrainer`` treats them as G unrelated
samples: the image processor runs 2G times per image, the vision tower sees G copies of it in every pass
(generation prefill, reference model, old policy, the training pass with grad), and generation prefills G
copies of the prompt. ``GroupSharedGRPOTrainer`` overrides three methods of ``trl.GRPOTrainer`` 1.16.0 and
nothing else:

- ``_generate_and_score_completions``: runs TRL's own method with the processor wrapped in
  :class:`~crowdvlm.train.sharing.processing.DedupProcessor`, so each distinct row is processed once.
- ``_generate_single_turn`` (plain ``transformers`` generation only): one prefill per distinct prompt, its KV
  cache indexed out to the G samples (:mod:`crowdvlm.train.sharing.prefill`).
- ``_get_per_token_logps_and_entropies``: the vision tower runs once per distinct image and its features go
  to every row through ``mm_encoder_outputs`` (:mod:`crowdvlm.train.sharing.vision`); under grad, backward sums
  the copies' gradients; and the language model runs each distinct prompt once, its G completions packed
  after it in one row (:mod:`crowdvlm.train.sharing.packing`).

Each falls back to TRL's code, with one logged warning per reason, where sharing cannot apply (vLLM or
continuous batching, tools, static caches, caches whose layers cannot be indexed by row, FSDP for the
vision pass, models whose ``get_image_features`` output or forward signature does not fit). Every reason
is known before the work starts (from the model's class and config, or from the batch); a batch-only reason
(a 1-token prompt) sends that batch alone to TRL's code.

Over ~400 lines on purpose: the three overrides and the checks that decide each one's fallback are kept in one
class, beside the TRL methods they replace, so that a TRL upgrade is reviewed against one file.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Iterator
from itertools import accumulate
from typing import Any

import torch
from transformers import ProcessorMixin
from trl import GRPOTrainer
from trl.extras.profiling import profiling_context
from trl.models import unwrap_model_for_generation
from trl.trainer.utils import pad

from crowdvlm.train.dynamic_sampling import DynamicSamplingMixin
from crowdvlm.train.sharing.fallbacks import Fallback, FallbackReason, SharingSkipped
from crowdvlm.train.sharing.families import family_of
from crowdvlm.train.sharing.packing import packed_logps_and_entropies, prefix_unsupported_reason
from crowdvlm.train.sharing.prefill import (
    batch_unsupported_reason,
    generate_with_shared_prefix,
    prefill_unsupported_reason,
)
from crowdvlm.train.sharing.processing import DedupProcessor, group_rows, processor_unsupported_reason
from crowdvlm.train.sharing.vision import (
    encode_unique_images,
    encoder_outputs_for,
    pad_vision_calls,
    sharing_unsupported_reason,
    split_images,
    unique_images,
    vision_calls,
)

logger = logging.getLogger(__name__)

TARGET_TRL_VERSION = "1.16.0"
_TOKEN_FIELDS = ("mm_token_type_ids", "token_type_ids")


class GroupSharedGRPOTrainer(DynamicSamplingMixin, GRPOTrainer):
    """Drop-in ``trl.GRPOTrainer`` (trl 1.16.0, same constructor) that shares work across each GRPO group.

    The four switches (keyword arguments, and recipe keys of ``crowdvlm train grpo``) are on by default;
    turning one off restores TRL's code for that part (the benchmark uses them to attribute the speed-up). One
    more optional keyword: ``dynamic_sampling`` (a :class:`~crowdvlm.train.dynamic_sampling.DynamicSampling`;
    default off), which filters groups without signal out of the loss (what the loss then averages over:
    :mod:`crowdvlm.train.dynamic_sampling`).

    Attributes:
        share_processing: process each distinct prompt/image once.
        share_prefill: prefill each distinct prompt once in generation.
        share_vision: run the vision tower once per distinct image in each log-prob pass.
        share_prefix: run the language model over each distinct prompt once in each log-prob pass (needs the
            shared vision features, so it is off wherever ``share_vision`` is).
        sharing_fallbacks: ``"<part>: <detail>"`` -> number of times TRL's code ran instead (for logs, JSON).
        fallback_reasons: ``(part, FallbackReason)`` -> the same counts, for code and tests.
    """

    def __init__(
        self,
        *args: Any,
        share_processing: bool = True,
        share_prefill: bool = True,
        share_vision: bool = True,
        share_prefix: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.share_processing = share_processing
        self.share_prefill = share_prefill
        self.share_vision = share_vision
        self.share_prefix = share_prefix
        self.sharing_fallbacks: dict[str, int] = {}
        self.fallback_reasons: Counter[tuple[str, FallbackReason]] = Counter()
        unwrapped = self.accelerator.unwrap_model(self.model)
        family = family_of(unwrapped)
        # Whether the model's generation cache can be indexed by row is fixed by its class and config.
        self._prefill_model_reason = (
            Fallback(FallbackReason.MODEL_FAMILY, f"{family.name} prefills per row")
            if family is not None and not family.prefill
            else prefill_unsupported_reason(unwrapped)
        )
        self._vision_family_reason = (
            Fallback(FallbackReason.MODEL_FAMILY, f"{family.name} encodes images per row")
            if family is not None and not family.vision_once
            else None
        )

    def _fall_back(self, part: str, fallback: Fallback) -> None:
        key = f"{part}: {fallback.detail}"
        if key not in self.sharing_fallbacks:
            logger.warning(
                "group sharing off for %s (%s); using TRL %s's code",
                part,
                fallback.detail,
                TARGET_TRL_VERSION,
            )
        self.sharing_fallbacks[key] = self.sharing_fallbacks.get(key, 0) + 1
        self.fallback_reasons[(part, fallback.reason)] += 1

    # --- image processor ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _deduplicating_processor(self) -> Iterator[None]:
        """Swap ``self.processing_class`` for a ``DedupProcessor`` around it, for one call."""
        original = self.processing_class
        if not (self.share_processing and isinstance(original, ProcessorMixin)):
            yield
            return
        reason = processor_unsupported_reason(original)
        if reason is not None:
            self._fall_back("processor", reason)
            yield
            return
        self.processing_class = DedupProcessor(original)
        try:
            yield
        finally:
            self.processing_class = original

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        """TRL's method, with each distinct prompt (and image) processed once instead of per row."""
        with self._deduplicating_processor():
            return super()._generate_and_score_completions(inputs)

    # --- generation --------------------------------------------------------------------------------------

    def _prefill_unsupported_reason(
        self, multimodal_fields: dict[str, Any], has_tool_images: bool
    ) -> Fallback | None:
        if not self.share_prefill:
            return Fallback(FallbackReason.DISABLED, "share_prefill is off")
        if self._prefill_model_reason is not None:
            return self._prefill_model_reason
        if self.use_vllm or self.use_transformers_continuous_batching:
            return Fallback(
                FallbackReason.GENERATION_BACKEND, "vLLM / continuous batching generate themselves"
            )
        if self.tools or has_tool_images:
            return Fallback(FallbackReason.TOOLS, "tool-calling rollouts")
        if (
            self.generation_config.cache_implementation is not None
            or (self.generation_config.num_beams or 1) > 1
        ):
            return Fallback(FallbackReason.DECODING, "static caches and beam search are not shared")
        unknown = sorted(set(multimodal_fields) - {"pixel_values", "image_grid_thw", *_TOKEN_FIELDS})
        if unknown:
            return Fallback(FallbackReason.UNSUPPORTED_INPUTS, f"unsupported generation inputs {unknown}")
        if "pixel_values" in multimodal_fields and "image_grid_thw" not in multimodal_fields:
            return Fallback(FallbackReason.IMAGE_LAYOUT, "pixel_values are not laid out by image_grid_thw")
        return None

    def _generate_single_turn(
        self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False
    ) -> tuple[list[list[int]], None]:
        """TRL's plain-``generate`` path, with one prefill per distinct prompt (same returns as TRL's)."""
        reason = self._prefill_unsupported_reason(multimodal_fields, has_tool_images)
        if reason is not None:
            if not reason.reason.silent:
                self._fall_back("generation", reason)
            return super()._generate_single_turn(
                prompt_ids, images, multimodal_fields, num_generations, has_tool_images
            )

        # Rows are copies when their tokens and their images' patches are equal.
        num_images = (
            [len(imgs) if imgs else 0 for imgs in images] if images is not None else [0] * len(prompt_ids)
        )
        pixel_values, image_grid_thw = (
            multimodal_fields.get("pixel_values"),
            multimodal_fields.get("image_grid_thw"),
        )
        image_keys = unique_images(pixel_values, image_grid_thw)[1] if pixel_values is not None else []
        image_start = [0, *accumulate(num_images)]
        keys = [
            (tuple(ids), tuple(image_keys[image_start[i] : image_start[i + 1]]))
            for i, ids in enumerate(prompt_ids)
        ]
        groups = group_rows(keys)
        if not groups.has_duplicates:
            return super()._generate_single_turn(
                prompt_ids, images, multimodal_fields, num_generations, has_tool_images
            )

        device = self.accelerator.device
        first = groups.first

        def left_pad(rows: list, value: int) -> torch.Tensor:
            tensors = [torch.as_tensor(rows[i]) for i in first]
            return pad(
                tensors, padding_value=value, padding_side="left", pad_to_multiple_of=self.pad_to_multiple_of
            )

        input_ids = left_pad(prompt_ids, self._tokenizer.pad_token_id).to(device)
        attention_mask = left_pad([[1] * len(ids) for ids in prompt_ids], 0).to(device)
        token_inputs = {
            k: left_pad(multimodal_fields[k], 0).to(device) for k in _TOKEN_FIELDS if k in multimodal_fields
        }
        # A condition of this batch alone (a 1-token prompt, a prompt ending in an image token): TRL's code
        # generates this batch and the next one is shared again.
        batch_reason = batch_unsupported_reason([len(prompt_ids[i]) for i in first], token_inputs)
        if batch_reason is not None:
            self._fall_back("generation of one batch", batch_reason)
            return super()._generate_single_turn(
                prompt_ids, images, multimodal_fields, num_generations, has_tool_images
            )
        prefill_inputs = {}
        if pixel_values is not None:
            per_image = split_images(pixel_values, image_grid_thw)
            own = [j for i in first for j in range(image_start[i], image_start[i + 1])]
            prefill_inputs = {
                "pixel_values": torch.cat([per_image[j] for j in own]).to(device),
                "image_grid_thw": image_grid_thw[own].to(device),
            }

        with (
            profiling_context(self, "transformers.generate"),
            unwrap_model_for_generation(
                self.model_wrapped,
                self.accelerator,
                gather_deepspeed3_params=self.args.ds3_gather_for_generation,
                generation_kwargs=self.generation_kwargs,
                gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs,
            ) as unwrapped_model,
            torch.no_grad(),
            self._dist.summon_full_params(self.model_wrapped, recurse=False),
        ):
            prompt_completion_ids = generate_with_shared_prefix(
                unwrapped_model,
                self.generation_config,
                input_ids,
                attention_mask,
                groups.inverse,
                token_inputs=token_inputs,
                prefill_inputs=prefill_inputs,
            )
        return self._completions_up_to_eos(prompt_completion_ids[:, input_ids.size(1) :]), None

    def _completions_up_to_eos(self, completion_ids: torch.Tensor) -> list[list[int]]:
        """Each row's tokens up to and including its first EOS, as TRL 1.16.0's ``_generate_single_turn``."""
        is_eos = torch.isin(completion_ids, torch.tensor(self.eos_token_ids, device=completion_ids.device))
        first_eos = torch.where(is_eos.any(dim=1), is_eos.int().argmax(dim=1), is_eos.size(1))
        keep = torch.arange(is_eos.size(1), device=completion_ids.device)[None, :] <= first_eos[:, None]
        return [row[mask].tolist() for row, mask in zip(completion_ids.cpu(), keep.cpu(), strict=True)]

    # --- log-prob passes ---------------------------------------------------------------------------------

    def _vision_unsupported_reason(
        self, model: Any, pixel_values, image_grid_thw, num_images, extra
    ) -> Fallback | None:
        if not self.share_vision:
            return Fallback(FallbackReason.DISABLED, "share_vision is off")
        if self.is_fsdp_enabled:
            return Fallback(
                FallbackReason.FSDP, "FSDP shards the vision tower; it only runs inside the wrapped forward"
            )
        if pixel_values is not None and self._vision_family_reason is not None:
            return self._vision_family_reason
        return sharing_unsupported_reason(model, pixel_values, image_grid_thw, num_images, extra)

    def _pad_vision_calls(
        self, unwrapped, reason, pixel_values, input_ids, batch_size
    ) -> torch.Tensor | None:
        """Under ZeRO-3, line up this pass's vision calls across ranks before any is made (see sharing.vision).

        Each call of the partitioned vision tower all-gathers its shards; a rank with fewer calls (no images)
        runs dummy ones. Returns a zero to add to the pass's log-probs, or ``None``.
        """
        zero3 = (
            self.is_deepspeed_enabled
            and getattr(self.accelerator.state.deepspeed_plugin, "zero_stage", 0) == 3
        )
        if not zero3 or (reason is not None and reason.reason is FallbackReason.DISABLED):
            return None
        calls = vision_calls(reason is None, pixel_values, input_ids.size(0), batch_size)
        with self.accelerator.autocast():
            return pad_vision_calls(unwrapped, calls, input_ids.device)

    def _get_per_token_logps_and_entropies(
        self,
        model,
        input_ids,
        attention_mask,
        logits_to_keep,
        batch_size=None,
        compute_entropy=False,
        compute_aux_loss=False,
        pixel_values=None,
        image_grid_thw=None,
        num_images=None,
        **extra,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """TRL's method with the vision tower run once per distinct image of the batch and, where the model
        allows, each distinct prompt run once (same returns)."""
        unwrapped = self.accelerator.unwrap_model(model)
        reason = self._vision_unsupported_reason(unwrapped, pixel_values, image_grid_thw, num_images, extra)
        padding = self._pad_vision_calls(unwrapped, reason, pixel_values, input_ids, batch_size)  # ZeRO-3
        if reason is None:  # checked before any work: Qwen3-VL's deepstack features are repeated too
            with self.accelerator.autocast():
                features, image_to_feature = encode_unique_images(unwrapped, pixel_values, image_grid_thw)
        no_images = reason is not None and reason.reason is FallbackReason.NO_IMAGES
        if reason is None or no_images:
            shared = self._logps_with_shared_prefix(
                model,
                unwrapped,
                input_ids,
                attention_mask,
                logits_to_keep,
                batch_size,
                compute_entropy,
                compute_aux_loss,
                extra,
                **(
                    {}
                    if no_images
                    else dict(
                        features=features,
                        image_to_feature=image_to_feature,
                        image_grid_thw=image_grid_thw,
                        num_images=num_images,
                    )
                ),
            )
            if shared is not None:
                if padding is not None:  # ZeRO-3 dummy vision calls: backward must reach them on every rank
                    shared = (shared[0] + padding, *shared[1:])
                return shared
        if reason is not None:
            if not reason.reason.silent:
                self._fall_back("vision", reason)
            logps, entropies, aux_loss = super()._get_per_token_logps_and_entropies(
                model,
                input_ids,
                attention_mask,
                logits_to_keep,
                batch_size,
                compute_entropy,
                compute_aux_loss,
                pixel_values=pixel_values,
                image_grid_thw=image_grid_thw,
                num_images=num_images,
                **extra,
            )
            return (logps if padding is None else logps + padding), entropies, aux_loss

        # Same chunked loop as TRL's, with features in place of pixels.
        batch_size = batch_size or input_ids.size(0)
        image_start = [0, *accumulate(num_images)]
        all_logps, all_entropies, all_aux_losses = [], [], []
        for start in range(0, input_ids.size(0), batch_size):
            end = min(start + batch_size, input_ids.size(0))
            model_inputs = {"input_ids": input_ids[start:end], "attention_mask": attention_mask[start:end]}
            first_image, end_image = image_start[start], image_start[end]
            if end_image > first_image:
                model_inputs["image_grid_thw"] = image_grid_thw[first_image:end_image]
                model_inputs["mm_encoder_outputs"] = encoder_outputs_for(
                    features, image_to_feature[first_image:end_image]
                )
            for key in _TOKEN_FIELDS:
                if extra.get(key) is not None:
                    model_inputs[key] = extra[key][start:end]
            if compute_aux_loss:
                model_inputs["output_router_logits"] = True

            # Only the completion tokens are scored
            labels = model_inputs["input_ids"].masked_fill(model_inputs["attention_mask"] == 0, -100)
            labels[:, :-logits_to_keep] = -100
            with self.accelerator.autocast():
                outputs = model(**model_inputs, labels=labels, fused_lm_head=True)
            all_logps.append(outputs.log_probs[:, -logits_to_keep:])
            if compute_entropy:
                all_entropies.append(outputs.entropy[:, -logits_to_keep:])
            if compute_aux_loss:
                all_aux_losses.append(outputs.aux_loss)

        logps = torch.cat(all_logps, dim=0)
        if padding is not None:
            logps = logps + padding  # zero; makes backward reach the dummy vision calls too
        entropies = torch.cat(all_entropies, dim=0) if compute_entropy else None
        aux_loss = torch.stack(all_aux_losses).mean() if compute_aux_loss else None
        return logps, entropies, aux_loss

    def _logps_with_shared_prefix(
        self,
        model,
        unwrapped,
        input_ids,
        attention_mask,
        logits_to_keep,
        batch_size,
        compute_entropy,
        compute_aux_loss,
        extra,
        **images,
    ) -> tuple[torch.Tensor, torch.Tensor | None, None] | None:
        """The packed-prompt log-probs, or ``None`` (after logging why, once per reason) to run per row."""
        if not self.share_prefix:
            return None
        reason = prefix_unsupported_reason(unwrapped, extra, compute_aux_loss)
        if reason is None:
            try:
                return packed_logps_and_entropies(
                    model,
                    unwrapped,
                    input_ids,
                    attention_mask,
                    logits_to_keep,
                    batch_size,
                    compute_entropy,
                    self.accelerator.autocast,
                    **images,
                )
            except SharingSkipped as skipped:  # this batch only
                reason = skipped.fallback
        if not reason.reason.silent:
            self._fall_back("prefix", reason)
        return None
