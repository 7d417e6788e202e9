"""The steps SFT and GRPO share: logging, data, model, callbacks, resuming and saving.

``sft.py`` and ``grpo.py`` each read as a straight line (seed, data, model, [rewards], trainer, train, save)
built from these functions; nothing here knows which trainer it serves.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crowdvlm.atomic import atomic_write_json
from crowdvlm.train.callbacks import JsonlLogCallback, JsonlWriter, RewardRecorder, SampleCompletionsCallback
from crowdvlm.train.cluster import RankAgreementCallback
from crowdvlm.train.config import TrainJob, job_summary
from crowdvlm.train.errors import ConfigError
from crowdvlm.train.resume import finished_state, last_checkpoint
from crowdvlm.train.tensorboard_samples import TensorBoardSamplesCallback

logger = logging.getLogger(__name__)

CONFIG_FILE = "crowdvlm_config.json"  # the resolved configuration, written next to the checkpoints
BAD_IMAGES_FILE = "bad_images.tsv"  # the images the check before training found unusable


@dataclass
class TrainResult:
    """What a finished run produced."""

    output_dir: Path
    global_step: int
    metrics: dict[str, Any]
    resumed_from: Path | None = None
    merged_dir: Path | None = None


def setup_logging(job: TrainJob) -> None:
    """Console logging at INFO on the main process, WARNING on the others (Hugging Face's own levels follow)."""
    import transformers

    level = logging.INFO if job.training.process_index == 0 else logging.WARNING
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    logging.getLogger("crowdvlm").setLevel(level)
    transformers.utils.logging.set_verbosity(job.training.get_process_log_level())


def load_train_dataset(job: TrainJob):
    """The manifests of ``--dataset`` as one ``datasets.Dataset`` (columns: prompt, image, solution, ...).

    Every image is checked first (full decode and the processor's own size rules, loading the processor but
    not the model). Bad images are listed in ``OUTPUT_DIR/bad_images.tsv``; the run is then refused, or with
    ``skip_bad_images`` they are left out and counted.

    Raises:
        ConfigError: bad images (without ``skip_bad_images``), a manifest with no usable rows, a record
            without ground truth or a malformed record.
    """
    from crowdvlm.data.errors import SkipLog
    from crowdvlm.data.images import ImageCheck
    from crowdvlm.data.manifest import manifest_to_dataset

    s = job.script
    skips = SkipLog(skip_bad=True)  # collect every bad image, then refuse or go on as the job says
    try:
        dataset = manifest_to_dataset(
            s.dataset,
            template=s.prompt_template,
            output=s.output_format,
            require_solution=True,
            with_points=s.output_format == "points",
            image_check=ImageCheck(_size_rule(job)),
            skips=skips,
            progress=not job.training.disable_tqdm and job.training.process_index == 0,
        )
    except (ValueError, FileNotFoundError, IsADirectoryError) as err:  # DataError is a ValueError
        report = _write_bad_images(job, skips)
        raise ConfigError(
            f"dataset: {err}" + (f" ({skips.summary()}: see {report})" if report else "")
        ) from err
    report = _write_bad_images(job, skips)
    if report is not None and not s.skip_bad_images:
        first = "; ".join(str(err) for err in skips.skipped[:3])
        raise ConfigError(
            f"dataset: {len(skips.skipped)} image(s) cannot be trained on, listed in {report} (first: {first}); "
            "fix or remove them, or set skip_bad_images: true to leave them out"
        )
    if report is not None:
        logger.warning(
            "training without %d bad image(s) (%s), listed in %s", len(skips.skipped), skips.summary(), report
        )
    logger.info("training data: %d rows from %s", len(dataset), ", ".join(s.dataset))
    return dataset


def add_point_frames(dataset, job: TrainJob, processor):
    """Point runs (``output_format: points``): add each image's ``frame_size`` as the model's processor sees it.

    Raises:
        ConfigError: ``point_frame: resized`` with a processor that has no Qwen-VL resize settings.
    """
    if job.script.output_format != "points":
        return dataset
    from crowdvlm.pointing.targets import add_frame_sizes, point_frame_for

    try:
        rule = point_frame_for(processor, job.script.point_frame)
    except ValueError as err:
        raise ConfigError(f"point_frame: {err}") from None
    return add_frame_sizes(dataset, job.script.point_frame, rule)


def load_processor(job: TrainJob):
    """The processor the run will use (its min/max pixels applied), without loading the model."""
    from transformers import AutoProcessor

    from crowdvlm.modeling import set_image_pixels

    processor = AutoProcessor.from_pretrained(job.model.model_name_or_path)
    try:
        set_image_pixels(processor, job.model.min_pixels, job.model.max_pixels)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    return processor


def _size_rule(job: TrainJob):
    """The size rules of the processor the run will use; no model is loaded."""
    from crowdvlm.data.images import processor_size_rule

    return processor_size_rule(load_processor(job))


def _write_bad_images(job: TrainJob, skips) -> Path | None:
    """``OUTPUT_DIR/bad_images.tsv`` (main process), when an image was found unusable."""
    if not skips.skipped:
        return None
    report = job.output_dir / BAD_IMAGES_FILE
    if job.training.process_index == 0:
        job.output_dir.mkdir(parents=True, exist_ok=True)
        skips.write_tsv(report)
    return report


def load_model(job: TrainJob):
    """The model, its processor and (for LoRA runs) the ``peft.LoraConfig`` the TRL trainer applies.

    LoRA is left to TRL (``peft_config=``) so that it handles gradient checkpointing and, for GRPO, the
    reference model (the base with adapters disabled) itself.
    """
    from crowdvlm.modeling import build_lora_config, load_model_and_processor

    m = job.model
    model, processor = load_model_and_processor(
        m.model_name_or_path,
        dtype=m.dtype,
        attn_implementation=m.attn_implementation,
        min_pixels=m.min_pixels,
        max_pixels=m.max_pixels,
        freeze_vision=m.freeze_vision,
    )
    peft_config = None
    if m.use_peft:
        peft_config = build_lora_config(
            r=m.lora_r,
            alpha=m.lora_alpha,
            dropout=m.lora_dropout,
            target_modules=m.lora_target_modules,
            include_vision=m.lora_include_vision,
        )
    return model, processor, peft_config


def build_callbacks(job: TrainJob, recorder: RewardRecorder | None = None) -> list:
    """JSONL metrics log, plus sampled completions with their rewards when a reward recorder is given."""
    writer = JsonlWriter(job.output_dir / job.script.log_file)
    callbacks = [JsonlLogCallback(writer.path, run_info={"kind": job.kind, "recipe": job.recipe})]
    callbacks.append(RankAgreementCallback(writer.path))  # multi-process runs only; see train/cluster.py
    if recorder is not None and job.script.sample_completions_steps:
        callbacks.append(
            SampleCompletionsCallback(
                recorder,
                writer,
                every=job.script.sample_completions_steps,
                k=job.script.num_sample_completions,
            )
        )
        callbacks.append(
            TensorBoardSamplesCallback(
                recorder, every=job.script.sample_completions_steps, groups=job.script.num_sample_groups
            )
        )
    return callbacks


def resume_checkpoint(job: TrainJob) -> str | None:
    """The checkpoint to resume from: ``resume_from_checkpoint`` if set, else with ``--resume`` the last one.

    An incomplete newest checkpoint (a crash while saving) is skipped with a logged line, in favour of the
    newest complete one.
    """
    if job.training.resume_from_checkpoint:
        return job.training.resume_from_checkpoint
    if not job.script.resume:
        return None
    # accelerate/torchrun set WORLD_SIZE: a DeepSpeed checkpoint must then hold a shard of every rank
    world_size = int(os.environ.get("WORLD_SIZE", "0")) or None
    checkpoint = last_checkpoint(
        job.output_dir, need_optimizer=not job.training.save_only_model, world_size=world_size
    )
    if checkpoint is None:
        logger.warning("--resume: no complete checkpoint in %s yet, starting from step 0", job.output_dir)
        return None
    logger.info("resuming from %s", checkpoint)
    return str(checkpoint)


def finished_run(job: TrainJob) -> TrainResult | None:
    """With ``--resume``, the result of a run in ``output_dir`` that already finished (else None).

    Training it again would add a step past ``max_steps`` and overwrite the final model.
    """
    if not job.script.resume:
        return None
    state = finished_state(job.output_dir, job.training.max_steps)
    if state is None:
        return None
    logger.info("%s is complete at step %d: nothing to resume", job.output_dir, state["global_step"])
    return TrainResult(output_dir=job.output_dir, global_step=state["global_step"], metrics={})


def write_config(job: TrainJob) -> None:
    """Save the resolved configuration next to the checkpoints (main process)."""
    if job.training.process_index == 0:
        atomic_write_json(job.output_dir / CONFIG_FILE, job_summary(job), default=str)


def train_and_save(trainer, job: TrainJob, processor) -> TrainResult:
    """Train (resuming if asked), then save the final model with its processor (and merged LoRA weights).

    A finished run given ``--resume`` is returned as it is: nothing trained, nothing overwritten.
    """
    done = finished_run(job)
    if done is not None:
        return done
    checkpoint = resume_checkpoint(job)
    output = trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model(str(job.output_dir))  # weights (or adapter) + processor, Hugging Face format
    trainer.save_state()  # trainer_state.json: global step and the log history
    merged_dir = None
    if job.model.save_merged:
        merged_dir = save_merged(trainer, processor, job.output_dir / "merged")
    return TrainResult(
        output_dir=job.output_dir,
        global_step=trainer.state.global_step,
        metrics=dict(output.metrics),
        resumed_from=Path(checkpoint) if checkpoint else None,
        merged_dir=merged_dir,
    )


def save_merged(trainer, processor, out_dir: Path) -> Path:
    """Merge the LoRA adapters into the base weights and save a plain Hugging Face model (vLLM-loadable)."""
    from accelerate.utils import is_peft_model

    trainer.accelerator.wait_for_everyone()
    model = trainer.accelerator.unwrap_model(trainer.model)
    if not is_peft_model(model):
        raise ConfigError("save_merged: the trained model has no LoRA adapters to merge")
    if trainer.accelerator.is_main_process:
        merged = model.merge_and_unload()
        merged.save_pretrained(out_dir)
        processor.save_pretrained(out_dir)
        logger.info("merged LoRA weights saved to %s", out_dir)
    trainer.accelerator.wait_for_everyone()
    return out_dir
