"""Dynamic sampling in GroupSharedGRPOTrainer: which groups survive, what is logged, what the loss averages over."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from crowdvlm.train.dynamic_sampling import (
    DynamicSampling,
    count_hits,
    drop_rows,
    groups_with_signal,
    loss_scale,
    merge_rows,
)
from crowdvlm.train.group_sharing import GroupSharedGRPOTrainer

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
    base = {**_batch(rows=2), "importance_sampling_ratio": torch.ones(2, 2)}
    with pytest.raises(ValueError, match="importance_sampling_ratio"):
        merge_rows(base, dict(base), [(0, 1)], pad_id=0)
