"""The experiment summary reads what a run really trained with from the run's own saved configuration."""

from __future__ import annotations

import json

import pytest

from crowdvlm.errors import UsageError
from crowdvlm.experiments.summary import task_reward_of
from crowdvlm.train.config import CONFIG_FILE


def test_task_reward_is_read_from_the_runs_saved_configuration(tmp_path):
    # The recipe might have said `rewards: fgrpr,format` or had an override: the run's resolved list decides.
    (tmp_path / CONFIG_FILE).write_text(
        json.dumps({"kind": "grpo", "script": {"rewards": ["ratio", "format"]}})
    )
    assert task_reward_of(tmp_path) == "ratio"
    (tmp_path / CONFIG_FILE).write_text(json.dumps({"kind": "grpo", "script": {"rewards": []}}))
    assert task_reward_of(tmp_path) is None


@pytest.mark.parametrize("content", [None, "", "[1, 2]", '{"script": 3}'])
def test_an_unreadable_saved_configuration_is_named(tmp_path, content):
    if content is not None:
        (tmp_path / CONFIG_FILE).write_text(content)
    with pytest.raises(UsageError, match=CONFIG_FILE):
        task_reward_of(tmp_path)
