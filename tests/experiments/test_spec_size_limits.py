"""Absurd sizes in an experiment file are refused by ``experiment check``, naming the key and the limit."""

from __future__ import annotations

import pytest
import yaml

from crowdvlm.data.synth_limits import MAX_COUNT, MAX_IMAGES, MAX_SIDE
from crowdvlm.demo import DEMO_FILE
from crowdvlm.errors import UsageError
from crowdvlm.experiments.spec import load_experiment

DEMO = DEMO_FILE  # the shipped demo experiment, inside the package


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"data": {"image_size": 100_000}}, f"data.image_size: expected pixels, 28 to {MAX_SIDE}"),
        (
            {"data": {"sets": {"val": {"n": 10**10}}}},
            f"data.sets.val.n: expected a positive number of images, at most {MAX_IMAGES}",
        ),
        (
            {"data": {"sets": {"ood": {"counts": [1, 10**9]}}}},
            f"data.sets.ood.counts: at most {MAX_COUNT} objects",
        ),
    ],
)
def test_absurd_sizes_in_an_experiment_file_are_refused(tmp_path, change, message):
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump({"extends": str(DEMO), **change}))
    with pytest.raises(UsageError, match=message.replace("[", r"\[").replace("(", r"\(")):
        load_experiment(path)
