"""Dynamic sampling and per-component advantages inside GroupSharedGRPOTrainer on the tiny Qwen2.5-VL.

The rewards here are made by hand so that which groups carry signal is known: a prompt whose solution is 3
scores the same on every completion (its group is filtered), any other prompt scores its row's place in the
group (its group always varies).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from crowdvlm.train.dynamic_sampling import DynamicSampling
from crowdvlm.train.group_sharing import GroupSharedGRPOTrainer
from grpo_helpers import cpu_grpo_config

G = 4
FLAT = 3  # the solution whose groups carry no signal


def place_reward(completions, solution, **kwargs) -> list[float]:
    """0 for every completion of a FLAT prompt, else the row's place within its group (always varies)."""
    return [0.0 if s == FLAT else float(i % G) for i, s in enumerate(solution)]


def format_like_reward(completions, solution, **kwargs) -> list[float]:
    """A large, group-varying bonus (a format reward's scale) to set against the small place reward."""
    return [10.0 * ((i // 2) % 2) for i in range(len(completions))]


def _dataset(solutions):
    from datasets import Dataset

    rng = np.random.default_rng(0)
    images = [
        Image.fromarray(rng.integers(0, 255, (112, 112, 3), dtype=np.uint8)) for _ in range(len(solutions))
    ]
    prompt = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many dots?"}]}]
    return Dataset.from_dict({"prompt": [prompt] * len(solutions), "image": images, "solution": solutions})


def _trainer(model_dir, tmp_path, solutions, *, sampling=None, rewards=(place_reward,), **config):
    from transformers import set_seed

    from crowdvlm.modeling import load_model_and_processor

    set_seed(0)
    model, processor = load_model_and_processor(model_dir, dtype="float32")
    args = cpu_grpo_config(
        tmp_path / "out",
        per_device_train_batch_size=2 * G,
        num_generations=G,
        max_completion_length=6,
        learning_rate=1e-3,
        shuffle_dataset=False,
        **config,
    )
    return GroupSharedGRPOTrainer(
        model=model,
        reward_funcs=list(rewards),
        args=args,
        train_dataset=_dataset(solutions),
        processing_class=processor,
        dynamic_sampling=sampling,
    )


def _rows(batch: dict, rows: list[int]) -> dict:
    """The generation batch restricted to ``rows`` (pixel values follow their rows)."""
    from trl.trainer.utils import split_pixel_values_by_grid, unsplit_pixel_values_by_grid

    batch = split_pixel_values_by_grid(batch)
    out = {}
    for key, value in batch.items():
        if isinstance(value, list):
            out[key] = [value[i] for i in rows]
        elif isinstance(value, torch.Tensor) and value.ndim > 0:
            out[key] = value[rows]
        else:
            out[key] = value
    return unsplit_pixel_values_by_grid(out)


def _first_batch(trainer) -> tuple[list[dict], dict]:
    inputs = [trainer.train_dataset[i] for i in range(len(trainer.train_dataset)) for _ in range(G)]
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train(); these tests call the loss alone
    torch.manual_seed(0)
    return inputs, trainer._generate_and_score_completions(inputs)


@pytest.mark.parametrize("loss_type", ["grpo", "dapo", "dr_grpo"])
def test_drop_averages_the_loss_over_the_surviving_groups(tiny_model_dir, tmp_path, loss_type):
    sampling = DynamicSampling(mode="drop", signal="reward")
    trainer = _trainer(tiny_model_dir, tmp_path, [FLAT, 5], sampling=sampling, loss_type=loss_type)
    _, batch = _first_batch(trainer)
    assert trainer._metrics["train"]["dynamic_sampling/frac_groups_filtered"] == [0.5]
    assert trainer._metrics["train"]["dynamic_sampling/frac_rows_in_loss"] == [0.5]
    assert batch["advantages"][:G].abs().sum() == 0 and batch["advantages"][G:].abs().sum() > 0
    assert batch["tool_mask"][:G].sum() == 0
    filtered = trainer._compute_loss(trainer.model, batch)

    # TRL's own loss on the surviving group alone: what the filtered loss must equal
    survivors = _rows(
        {k: v for k, v in batch.items() if k not in ("tool_mask", "loss_scale")}, list(range(G, 2 * G))
    )
    survivors["num_items_in_batch"] = batch["completion_mask"][G:].sum()
    trainer.dynamic_sampling = None
    alone = trainer._compute_loss(trainer.model, survivors)
    assert filtered.item() == pytest.approx(alone.item(), rel=1e-5)


def test_drop_with_every_group_filtered_gives_a_zero_loss(tiny_model_dir, tmp_path):
    trainer = _trainer(tiny_model_dir, tmp_path, [FLAT, FLAT], sampling=DynamicSampling("drop", "reward"))
    _, batch = _first_batch(trainer)
    assert trainer._metrics["train"]["dynamic_sampling/frac_groups_filtered"] == [1.0]
    assert trainer._compute_loss(trainer.model, batch).item() == 0.0


def test_exact_signal_filters_groups_that_are_all_wrong(tiny_model_dir, tmp_path):
    # a random model never answers "<answer>N</answer>", so every group is all wrong, though its reward varies
    trainer = _trainer(tiny_model_dir, tmp_path, [5, 6], sampling=DynamicSampling("drop", "exact"))
    _, batch = _first_batch(trainer)
    assert trainer._metrics["train"]["dynamic_sampling/frac_groups_filtered"] == [1.0]
    assert batch["advantages"].abs().sum() == 0


def test_resample_replaces_filtered_groups_with_fresh_ones(tiny_model_dir, tmp_path):
    # the batch holds two flat prompts; two draws of two prompts each cover the whole set, both varying ones
    sampling = DynamicSampling("resample", "reward", max_resamples=2)
    trainer = _trainer(tiny_model_dir, tmp_path, [FLAT, FLAT, 5, 7], sampling=sampling)
    inputs = [trainer.train_dataset[i] for i in (0, 1) for _ in range(G)]
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    batch = trainer._generate_and_score_completions(inputs)
    metrics = trainer._metrics["train"]
    assert metrics["dynamic_sampling/frac_groups_filtered"] == [1.0]  # of the first draw
    assert 1 <= metrics["dynamic_sampling/resample_draws"][0] <= 2
    assert metrics["dynamic_sampling/frac_rows_in_loss"] == [1.0]
    assert batch["advantages"].view(2, G).abs().sum(dim=1).gt(0).all()  # both groups are varying ones now
    assert batch["prompt_ids"].size(0) == 2 * G and batch["num_images"] == [1] * (2 * G)
    assert trainer._compute_loss(trainer.model, batch).isfinite()


def test_no_group_filtered_trains_exactly_like_plain_grpo(tiny_model_dir, tmp_path):
    weights = {}
    for name, sampling in (("plain", None), ("filtered", DynamicSampling("drop", "reward"))):
        trainer = _trainer(tiny_model_dir, tmp_path / name, [5, 6], sampling=sampling, max_steps=2)
        trainer.train()
        weights[name] = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
        if sampling is not None:
            key = "dynamic_sampling/frac_groups_filtered"
            logged = [log[key] for log in trainer.state.log_history if key in log]
            assert logged == [0.0, 0.0]  # on, and nothing filtered
    for name, value in weights["plain"].items():
        torch.testing.assert_close(weights["filtered"][name], value, rtol=1e-6, atol=1e-7, msg=name)


def test_per_component_advantages_normalise_each_reward_within_the_group(tiny_model_dir, tmp_path):
    """TRL's normalize_then_sum (GDPO): each reward is z-scored within its group, summed, then z-scored over the
    batch; sum_then_normalize z-scores the weighted sum within the group, where the large reward dominates."""
    from trl.trainer.utils import nanstd

    rewards = (place_reward, format_like_reward)
    advantages = {}
    for how in ("sum_then_normalize", "normalize_then_sum"):
        trainer = _trainer(
            tiny_model_dir, tmp_path / how, [5, 6], rewards=rewards, multi_objective_aggregation=how
        )
        _, batch = _first_batch(trainer)
        advantages[how] = batch["advantages"]
    place = torch.tensor([float(i % G) for i in range(2 * G)]).view(2, G)
    bonus = torch.tensor([10.0 * ((i // 2) % 2) for i in range(2 * G)]).view(2, G)

    def z(x):
        return (x - x.mean(dim=1, keepdim=True)) / (nanstd(x, dim=1, keepdim=True) + 1e-4)

    summed = z(place + bonus).flatten()
    per_component = (z(place) + z(bonus)).flatten()
    per_component = (per_component - per_component.mean()) / (nanstd(per_component) + 1e-4)
    torch.testing.assert_close(advantages["sum_then_normalize"], summed, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(advantages["normalize_then_sum"], per_component, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(advantages["sum_then_normalize"], advantages["normalize_then_sum"], atol=1e-2)


def test_per_component_advantages_compose_with_dynamic_sampling(tiny_model_dir, tmp_path):
    trainer = _trainer(
        tiny_model_dir,
        tmp_path,
        [FLAT, 5],
        sampling=DynamicSampling("drop", "exact"),
        rewards=(place_reward, format_like_reward),
        multi_objective_aggregation="normalize_then_sum",
    )
    _, batch = _first_batch(trainer)
    assert batch["advantages"].abs().sum() == 0  # all wrong: filtered although both rewards vary
    assert trainer._compute_loss(trainer.model, batch).item() == 0.0
