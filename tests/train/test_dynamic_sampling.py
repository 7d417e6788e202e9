"""Dynamic sampling in GroupSharedGRPOTrainer: which groups survive, what is logged, what the loss averages over."""

from __future__ import annotations

import pytest
import torch

from crowdvlm.experiments.yamlfile import PACKAGE_DIR
from crowdvlm.train.dynamic_sampling import (
    DynamicSampling,
    count_hits,
    drop_rows,
    groups_with_signal,
    loss_scale,
    merge_rows,
)

G = 4


# --------------------------------------------------------------------------- hand-made batches


def test_groups_with_signal_keeps_only_groups_whose_values_differ():
    values = torch.tensor([1, 1, 1, 1, 0, 1, 0, 0, 0.5, 0.5, 0.5, 0.5000001, 2, float("nan"), 2, 3.0])
    assert groups_with_signal(values, G).tolist() == [False, True, False, True]


def test_groups_with_signal_needs_two_scored_rows():
    nan = float("nan")
    assert groups_with_signal(torch.tensor([nan, nan, nan, 1.0]), G).tolist() == [False]


def test_count_hits_reads_answers_like_the_binary_reward():
    completions = ["<answer>10</answer>", "<answer>11</answer>", "<answer>12</answer>", "ten"]
    assert count_hits(completions, [10] * 4, k=0) == [1.0, 0.0, 0.0, 0.0]
    assert count_hits(completions, ["10"] * 4, k=1) == [1.0, 1.0, 0.0, 0.0]


def test_loss_scale_renormalises_row_averaged_losses_only():
    assert loss_scale("grpo", rows=32, kept_rows=8) == 4.0
    assert loss_scale("dr_grpo", rows=32, kept_rows=32) == 1.0
    assert loss_scale("dapo", rows=32, kept_rows=8) == 1.0
    assert loss_scale("grpo", rows=32, kept_rows=0) == 0.0


def _batch(rows: int = 8, prompt: int = 3, completion: int = 2) -> dict:
    return {
        "prompt_ids": torch.arange(rows * prompt).view(rows, prompt),
        "prompt_mask": torch.ones(rows, prompt, dtype=torch.long),
        "completion_ids": torch.arange(rows * completion).view(rows, completion) + 100,
        "completion_mask": torch.ones(rows, completion, dtype=torch.long),
        "advantages": torch.arange(rows, dtype=torch.float) + 1,
        "num_items_in_batch": torch.tensor(rows * completion),
    }


def test_drop_rows_zeroes_the_filtered_rows_and_sets_the_normaliser():
    batch = _batch()
    keep = torch.tensor([False] * 4 + [True] * 4)
    drop_rows(batch, keep, "grpo", scale=2.0, kept_tokens=torch.tensor(8))
    assert batch["advantages"].tolist() == [0, 0, 0, 0, 5, 6, 7, 8]
    assert batch["tool_mask"].sum(dim=1).tolist() == [0, 0, 0, 0, 2, 2, 2, 2]
    assert batch["loss_scale"].item() == 2.0
    assert batch["num_items_in_batch"].item() == 16  # row-averaged loss: TRL does not read it
    dapo = _batch()
    drop_rows(dapo, keep, "dapo", scale=1.0, kept_tokens=torch.tensor(8))
    assert dapo["num_items_in_batch"].item() == 8


def test_merge_rows_aligns_padding_of_both_batches():
    base, donor = _batch(rows=2, prompt=3, completion=2), _batch(rows=2, prompt=2, completion=4)
    merged = merge_rows(base, donor, [(1, 0)], pad_id=-1)
    assert merged["prompt_ids"].tolist() == [[0, 1, 2], [-1, 0, 1]]  # left padded
    assert merged["prompt_mask"].tolist() == [[1, 1, 1], [0, 1, 1]]
    assert merged["completion_ids"].tolist() == [[100, 101, -1, -1], [100, 101, 102, 103]]  # right padded
    assert merged["completion_mask"].tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    assert merged["advantages"].tolist() == [1.0, 1.0]


def test_merge_rows_refuses_fields_it_does_not_know():
    base = {**_batch(rows=2), "some_new_field": torch.ones(2, 2)}
    with pytest.raises(ValueError, match="some_new_field"):
        merge_rows(base, dict(base), [(0, 1)], pad_id=0)


def test_merge_rows_carries_vllms_importance_sampling_ratios_per_token_and_per_sequence():
    base, donor = _batch(rows=2, completion=2), _batch(rows=2, completion=4)
    base["importance_sampling_ratio"] = torch.tensor([[0.5, 0.6], [0.7, 0.8]])  # token_* modes: (B, C)
    donor["importance_sampling_ratio"] = torch.tensor([[1.1, 1.2, 1.3, 1.4], [2.1, 2.2, 2.3, 2.4]])
    merged = merge_rows(base, donor, [(1, 0)], pad_id=-1)
    expected = torch.tensor([[0.5, 0.6, 0, 0], [1.1, 1.2, 1.3, 1.4]])
    torch.testing.assert_close(merged["importance_sampling_ratio"], expected)
    base["importance_sampling_ratio"] = torch.tensor([[0.5], [0.7]])  # sequence_* modes: (B, 1)
    donor["importance_sampling_ratio"] = torch.tensor([[1.5], [2.5]])
    merged = merge_rows(base, donor, [(0, 1)], pad_id=-1)
    torch.testing.assert_close(merged["importance_sampling_ratio"], torch.tensor([[2.5], [0.7]]))


# --------------------------------------------------------------------------- recipe keys

RECIPE = str(PACKAGE_DIR / "recipes" / "demo" / "grpo.yaml")  # the demo's GRPO recipe, shipped in the package


@pytest.fixture
def recipe_paths(tiny_model_dir, tmp_path) -> dict:
    from crowdvlm.data.synth import generate

    manifest = generate(
        tmp_path / "d", n=2, style="dots", min_count=1, max_count=3, size=(56, 56), progress=False
    )
    return {
        "model_name_or_path": str(tiny_model_dir),
        "dataset": [str(manifest)],
        "output_dir": str(tmp_path / "o"),
    }


def test_recipe_keys_reach_the_trainer_options(recipe_paths):
    from crowdvlm.train.config import parse_job

    job = parse_job(
        "grpo",
        [
            "--dynamic_sampling",
            "resample",
            "--dynamic_sampling_signal",
            "within_k",
            "--dynamic_sampling_k",
            "2",
        ],
        recipe=RECIPE,
        multi_objective_aggregation="normalize_then_sum",
        **recipe_paths,
    )
    assert DynamicSampling.from_script(job.script) == DynamicSampling("resample", "within_k", 2, 2)
    assert job.training.multi_objective_aggregation == "normalize_then_sum"
    assert DynamicSampling.from_script(parse_job("grpo", recipe=RECIPE, **recipe_paths).script) is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"dynamic_sampling": "sometimes"}, "dynamic_sampling must be one of"),
        (
            {"dynamic_sampling": "drop", "dynamic_sampling_signal": "f1"},
            "dynamic_sampling_signal must be one of",
        ),
        ({"dynamic_sampling": "drop", "loss_type": "bnpo"}, "cannot renormalise loss_type 'bnpo'"),
        ({"dynamic_sampling": "drop", "share_prompt": False}, "share_prompt: true"),
        ({"dynamic_sampling": "drop", "entropy_coef": 0.01}, "entropy_coef: 0"),
    ],
)
def test_recipe_keys_that_cannot_work_are_refused(recipe_paths, overrides, message):
    from crowdvlm.train.config import parse_job
    from crowdvlm.train.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        parse_job("grpo", recipe=RECIPE, **recipe_paths, **overrides)
