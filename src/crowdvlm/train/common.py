"""The steps SFT and GRPO share: logging, data, model, callbacks, resuming and saving.

``sft.py`` and ``grpo.py`` each read as a straight line (seed, data, model, [rewards], trainer, train, save)
built from these functions; nothing here knows which trainer it serves.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crowdvlm.train.callbacks import JsonlLogCallback, JsonlWriter, RewardRecorder, SampleCompletionsCallback
from crowdvlm.train.checks import last_checkpoint
from crowdvlm.train.cluster import RankAgreementCallback
from crowdvlm.train.config import ConfigError, TrainJob, job_summary

logger = logging.getLogger(__name__)

CONFIG_FILE = "crowdvlm_config.json"  # the resolved configuration, written next to the checkpoints


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

    Raises:
        ConfigError: a manifest with no usable rows, a record without ground truth or a malformed record.
    """
    from crowdvlm.data.manifest import manifest_to_dataset

    s = job.script
    try:
        dataset = manifest_to_dataset(
            s.dataset, template=s.prompt_template, output=s.output_format, require_solution=True
        )
    except (ValueError, FileNotFoundError) as err:  # DataError is a ValueError
        raise ConfigError(f"dataset: {err}") from err
    logger.info("training data: %d rows from %s", len(dataset), ", ".join(s.dataset))
    return dataset


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
    return callbacks


def resume_checkpoint(job: TrainJob) -> str | None:
    """The checkpoint to resume from: ``resume_from_checkpoint`` if set, else with ``--resume`` the last one."""
    if job.training.resume_from_checkpoint:
        return job.training.resume_from_checkpoint
    if not job.script.resume:
        return None
    checkpoint = last_checkpoint(job.output_dir)
    if checkpoint is None:
        logger.warning("--resume: no checkpoint in %s yet, starting from step 0", job.output_dir)
        return None
    logger.info("resuming from %s", checkpoint)
    return str(checkpoint)


def write_config(job: TrainJob) -> None:
    """Save the resolved configuration next to the checkpoints (main process)."""
    if job.training.process_index == 0:
        job.output_dir.mkdir(parents=True, exist_ok=True)
        (job.output_dir / CONFIG_FILE).write_text(json.dumps(job_summary(job), indent=2, default=str) + "\n")


def train_and_save(trainer, job: TrainJob, processor) -> TrainResult:
    """Train (resuming if asked), then save the final model with its processor (and merged LoRA weights)."""
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
