"""A toy experiment (one SFT arm of two steps on four images of the shipped demo base) for runner tests."""

from pathlib import Path

import pytest

from crowdvlm.experiments.yamlfile import PACKAGE_DIR

RECIPES = PACKAGE_DIR / "recipes"
TOY = f"""name: toy
title: A toy
base: package:demo/base
data:
  image_size: 56
  sets:
    train: {{styles: [dots], counts: [0, 5], n: 4, seed: 1}}
    test: {{styles: [dots], counts: [0, 5], n: 2, seed: 2}}
train_set: train
test_sets: [test]
seeds: [0]
eval: {{template: train, output: answer-only, max_new_tokens: 4, batch_size: 2}}
arms:
  sft:
    train: sft
    recipe: {RECIPES / "demo" / "sft.yaml"}
    lr_grid: [1.0e-4]
    overrides: {{per_device_train_batch_size: 2, max_steps: 2, save_strategy: steps, save_steps: 1}}
report: {{n_boot: 20}}
"""


@pytest.fixture
def toy_file(tmp_path):
    """``write(extra="")`` writes the toy experiment (plus YAML lines that change it) and returns its path."""

    def write(extra: str = "", name: str = "toy.yaml") -> Path:
        path = tmp_path / name
        path.write_text(TOY + extra)
        return path

    return write
