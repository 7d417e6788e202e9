"""``--resume`` over DeepSpeed checkpoints: a rank's missing, empty or torn shard makes a checkpoint incomplete.

The folders are made by hand in DeepSpeed's layout (``latest`` naming ``global_stepN/``, one
``zero_pp_rank_R_mp_rank_00_{model,optim}_states.pt`` pair per rank under ZeRO-3); DeepSpeed itself is not run.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from crowdvlm.train.resume import checkpoint_problem, last_checkpoint


def _torch_file(path: Path) -> None:
    """A small file in ``torch.save``'s format (a zip archive)."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02}q\x00.")


def _checkpoint(out: Path, step: int, ranks: int = 2, *, zero3: bool = True) -> Path:
    folder = out / f"checkpoint-{step}"
    shards = folder / f"global_step{step}"
    shards.mkdir(parents=True)
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step, "max_steps": 10}))
    (folder / "model.safetensors").write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    (folder / "latest").write_text(f"global_step{step}")
    if not zero3:
        _torch_file(shards / "mp_rank_00_model_states.pt")
    for rank in range(ranks):
        if zero3:
            _torch_file(shards / f"zero_pp_rank_{rank}_mp_rank_00_model_states.pt")
        _torch_file(shards / f"bf16_zero_pp_rank_{rank}_mp_rank_00_optim_states.pt")
    return folder


def test_complete_deepspeed_checkpoints_are_resumable(tmp_path):
    assert checkpoint_problem(_checkpoint(tmp_path, 2)) is None
    assert checkpoint_problem(_checkpoint(tmp_path, 4, zero3=False)) is None
    assert last_checkpoint(tmp_path) == tmp_path / "checkpoint-4"


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        ("empty_model", "zero_pp_rank_1_mp_rank_00_model_states.pt is empty"),
        ("empty_optim", "bf16_zero_pp_rank_1_mp_rank_00_optim_states.pt is empty"),
        ("missing_model", "model_states.pt of rank 1 is missing"),
        ("missing_optim", "optim_states.pt of rank 1 is missing"),
        ("torn_optim", "bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt is truncated"),
        ("no_tag", "global_step4 named by latest is missing"),
    ],
)
def test_newest_checkpoint_with_a_bad_rank_shard_falls_back_with_a_warning(tmp_path, caplog, damage, named):
    _checkpoint(tmp_path, 2)
    shards = _checkpoint(tmp_path, 4) / "global_step4"
    if damage == "empty_model":
        (shards / "zero_pp_rank_1_mp_rank_00_model_states.pt").write_bytes(b"")
    elif damage == "empty_optim":
        (shards / "bf16_zero_pp_rank_1_mp_rank_00_optim_states.pt").write_bytes(b"")
    elif damage == "missing_model":
        (shards / "zero_pp_rank_1_mp_rank_00_model_states.pt").unlink()
    elif damage == "missing_optim":
        (shards / "bf16_zero_pp_rank_1_mp_rank_00_optim_states.pt").unlink()
    elif damage == "torn_optim":
        path = shards / "bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt"
        path.write_bytes(path.read_bytes()[:-30])
    else:
        for path in shards.iterdir():
            path.unlink()
        shards.rmdir()
    assert named in checkpoint_problem(shards.parent)
    with caplog.at_level("WARNING", logger="crowdvlm.train.resume"):
        assert last_checkpoint(tmp_path) == tmp_path / "checkpoint-2"
    assert "checkpoint-4" in caplog.text and named in caplog.text


def test_a_rank_missing_altogether_is_caught_when_the_world_size_is_known(tmp_path):
    folder = _checkpoint(tmp_path, 2, ranks=2)
    assert checkpoint_problem(folder, world_size=2) is None
    assert "rank 2" in checkpoint_problem(folder, world_size=3)


def test_model_only_deepspeed_checkpoint_needs_no_optimizer_shards(tmp_path):
    shards = _checkpoint(tmp_path, 2) / "global_step2"
    for path in shards.glob("*optim_states.pt"):
        path.unlink()
    assert checkpoint_problem(shards.parent, need_optimizer=False) is None
    assert "optim_states.pt of rank 0 is missing" in checkpoint_problem(shards.parent)
