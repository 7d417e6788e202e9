"""Dynamic sampling when vLLM generates: a colocated vLLM's batch carries its importance-sampling ratios, and
``resample`` puts fresh groups, ratios included, in place of the filtered ones.

The trainer is the one ``crowdvlm train grpo`` builds with ``use_vllm: true`` and ``share_prompt: true``
(GroupSharedGRPOTrainer behind VLLMSyncMixin, vLLM colocated in this process) on the tiny Qwen2.5-VL with
head_dim 32. The rewards are made by hand so that which groups carry signal is known: a prompt whose solution is 3
scores the same on every completion (its group is filtered), any other prompt scores its row's place in the group.
Runs in the `make setup-vllm` environment only.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.vllm

G = 4
FLAT = 3


def place_reward(completions, solution, **kwargs) -> list[float]:
    return [0.0 if s == FLAT else float(i % G) for i, s in enumerate(solution)]


@pytest.mark.parametrize("mode", ["sequence_mask", "token_truncate"])  # ratios (B, 1) and (B, C)
def test_resample_with_vllm_replaces_filtered_groups_and_their_ratios(
    tiny_vllm_model_dir, tmp_path, monkeypatch, mode
):
    import torch
    from datasets import Dataset
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from crowdvlm.train.dynamic_sampling import DynamicSampling
    from crowdvlm.train.grpo import trainer_class
    from grpo_helpers import colocated_vllm_config, random_image_dataset

    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
    images = random_image_dataset(4)
    dataset = Dataset.from_dict(
        {"prompt": images["prompt"], "image": images["image"], "solution": [FLAT, FLAT, 5, 7]}
    )
    config = colocated_vllm_config(
        tmp_path / "run",
        per_device_train_batch_size=2 * G,
        num_generations=G,
        vllm_importance_sampling_mode=mode,
    )
    Trainer = trainer_class(share_prompt=True, use_vllm=True)
    trainer = Trainer(
        model=AutoModelForImageTextToText.from_pretrained(tiny_vllm_model_dir, dtype="float32"),
        reward_funcs=[place_reward],
        args=config,
        train_dataset=dataset,
        processing_class=AutoProcessor.from_pretrained(tiny_vllm_model_dir),
        dynamic_sampling=DynamicSampling("resample", "reward", max_resamples=2),
    )
    inputs = [dataset[i] for i in (0, 1) for _ in range(G)]  # both groups flat: the first draw filters both
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    batch = trainer._generate_and_score_completions(inputs)

    metrics = trainer._metrics["train"]
    assert metrics["dynamic_sampling/frac_groups_filtered"] == [1.0]
    assert 1 <= metrics["dynamic_sampling/resample_draws"][0] <= 2  # two draws of two prompts cover the set
    assert metrics["dynamic_sampling/frac_rows_in_loss"] == [1.0]
    assert batch["advantages"].view(2, G).abs().sum(dim=1).gt(0).all()  # both groups are varying ones now
    ratios = batch["importance_sampling_ratio"]
    width = 1 if mode.startswith("sequence") else batch["completion_ids"].size(1)
    assert ratios.shape == (2 * G, width)
    assert ratios.isfinite().all()
    assert torch.isfinite(trainer._compute_loss(trainer.model, batch))
