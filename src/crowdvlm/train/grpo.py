"""GRPO on counting manifests with TRL's ``GRPOTrainer`` and rewards chosen by name.

The paper's run is ``rewards: [fgrpr, format]`` with ``reward_weights: [1, 1]``; its baseline
``rewards: [binary, format]``. TRL sums the weighted rewards per completion, normalises them within each
group of ``num_generations`` completions (``scale_rewards: group``) and optimises the clipped objective
selected by ``loss_type`` (the paper's recipes set ``grpo``; see README "Training" for TRL 1.x defaults
that differ from the paper's code).

With ``share_prompt: true`` (the default) the trainer is
:class:`crowdvlm.train.sharing.trainer.GroupSharedGRPOTrainer`, a drop-in subclass of ``trl.GRPOTrainer`` that
encodes each image once per group; ``share_prompt: false`` runs stock TRL. The keys ``share_processing``,
``share_prefill``, ``share_vision`` and ``share_prefix`` switch its parts (docs/speed.md). ``use_vllm: true`` (with
``vllm_mode: colocate``) generates with vLLM in the training process (docs/training.md, "vLLM").

Run: ``crowdvlm train grpo --config recipes/tiny/grpo_fgrpr.yaml [--key value ...]``
"""

from __future__ import annotations

import logging

from crowdvlm.train.callbacks import RewardRecorder
from crowdvlm.train.common import (
    TrainResult,
    add_point_frames,
    build_callbacks,
    load_model,
    load_train_dataset,
    train_and_save,
    write_config,
)
from crowdvlm.train.config import GRPOScriptArguments, TrainJob
from crowdvlm.train.dynamic_sampling import DynamicSampling
from crowdvlm.train.sharing.group_layout import warn_if_groups_split

logger = logging.getLogger(__name__)


def build_rewards(script: GRPOScriptArguments) -> list:
    """The reward functions named in ``rewards``, with their ``reward_kwargs`` (weights are TRL's ``reward_weights``)."""
    from crowdvlm.rewards import build_reward

    return [build_reward(name, **script.reward_kwargs.get(name, {})) for name in script.rewards]


def trainer_class(share_prompt: bool, use_vllm: bool = False):
    """``GroupSharedGRPOTrainer`` when prompts (images) are shared across a group, else stock ``trl.GRPOTrainer``.

    With ``use_vllm`` either gets :class:`~crowdvlm.train.vllm_sync.VLLMSyncMixin` in front: vLLM generates, and
    each weight sync reloads through vLLM and drops its encoder cache (see :mod:`crowdvlm.train.vllm_sync`).
    """
    if share_prompt:
        from crowdvlm.train.sharing.trainer import GroupSharedGRPOTrainer as Base
    else:
        from trl import GRPOTrainer as Base
    if not use_vllm:
        return Base
    from crowdvlm.train.vllm_sync import VLLMSyncMixin

    return type(f"VLLM{Base.__name__}", (VLLMSyncMixin, Base), {"__module__": __name__})


def run_grpo(job: TrainJob) -> TrainResult:
    """Run one GRPO job end to end: seed, data, model, rewards, trainer, train, save."""
    from transformers import set_seed

    set_seed(job.training.seed)
    write_config(job)
    warn_if_groups_split(job.training, job.script.share_prompt)

    dataset = load_train_dataset(job)

    model, processor, peft_config = load_model(job)
    dataset = add_point_frames(dataset, job, processor)  # point runs: the frame the point rewards score in

    recorder = RewardRecorder()  # keeps the last batch's completions and rewards for the sample log
    reward_funcs = recorder.wrap(build_rewards(job.script))
    weights = job.training.reward_weights or [1.0] * len(reward_funcs)
    logger.info(
        "rewards: %s", ", ".join(f"{w:g} x {f.__name__}" for w, f in zip(weights, reward_funcs, strict=True))
    )

    Trainer = trainer_class(job.script.share_prompt, use_vllm=job.training.use_vllm)
    switches = job.script.sharing_switches if job.script.share_prompt else {}
    sampling = DynamicSampling.from_script(
        job.script
    )  # None unless dynamic_sampling is on (needs share_prompt)
    trainer = Trainer(
        **switches,
        **({"dynamic_sampling": sampling} if sampling else {}),
        model=model,
        reward_funcs=reward_funcs,
        args=job.training,
        train_dataset=dataset,
        processing_class=processor,
        peft_config=peft_config,
        callbacks=build_callbacks(job, recorder),
    )
    result = train_and_save(trainer, job, processor)
    logger.info("GRPO done: %d steps, model saved to %s", result.global_step, result.output_dir)
    return result
