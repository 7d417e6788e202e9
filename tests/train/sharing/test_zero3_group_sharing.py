"""Two processes under DeepSpeed ZeRO-3 (gloo, CPU), every parameter partitioned: group sharing matches stock TRL.

Launched through ``accelerate launch`` with the shipped ``recipes/accelerate/zero3.yaml`` as a CPU copy
(``benchmarks/zero3_cpu.py``). In one launch each rank trains stock
``trl.GRPOTrainer`` for one step, then ``GroupSharedGRPOTrainer`` from the same seeds, and counts the rows
its vision tower sees by forward hook; then ranks make different numbers of vision calls and
``pad_vision_calls`` lines them up (a mismatch would hang the launch, which the timeout turns into a failure).
As a script (what accelerate runs): ``python this.py OUT MODEL``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sharing_helpers import G, multiprocess_config, multiprocess_trainer, pythonpath_with_tests

ROOT = Path(__file__).resolve().parents[3]
PATCHES = 64  # patch rows of one 112x112 image for the tiny model (16 tokens x 2x2 merge)


def _train_one_step(which: str, out: Path, model_dir: str, dataset) -> dict:
    from crowdvlm.train.cluster import fingerprint, partition_counts
    from grpo_helpers import count_vision_rows

    trainer = multiprocess_trainer(which, model_dir, multiprocess_config(out / which), dataset)
    model = trainer.model
    reference = getattr(trainer.ref_model, "module", trainer.ref_model)  # a DeepSpeed engine of its own
    rows = count_vision_rows(model.model.visual, reference.model.visual)
    partitioned = partition_counts(trainer.model)
    initial = {name: fingerprint(param) for name, param in trainer.model.named_parameters()}
    trainer.train()
    weights = {name: fingerprint(param) for name, param in trainer.model.named_parameters()}
    return {
        "engine": type(trainer.model_wrapped).__name__,
        "zero_stage": trainer.model_wrapped.zero_optimization_stage(),
        "partitioned": partitioned,
        "rows": dict(rows),  # a copy: the hooks stay on
        "loss": [log["loss"] for log in trainer.state.log_history if "loss" in log],
        "weights": weights,
        "changed": sorted(name for name, value in weights.items() if value != initial[name]),
        "fallbacks": getattr(trainer, "sharing_fallbacks", {}),
        "unwrapped": trainer.accelerator.unwrap_model(trainer.model_wrapped),
    }


def _worker(out: str, model_dir: str) -> None:
    import torch
    import torch.distributed as dist

    from crowdvlm.train.sharing.vision import pad_vision_calls
    from grpo_helpers import random_image_dataset

    torch.set_num_threads(1)
    dataset = random_image_dataset()

    result = {}
    for which in ("stock", "shared"):
        result[which] = _train_one_step(which, Path(out), model_dir, dataset)
    model = result["shared"].pop("unwrapped")
    result["stock"].pop("unwrapped")

    # Rank 0 makes no vision call of its own, rank 1 one real call: rank 0 must add one dummy call, which
    # it makes while rank 1 makes its own (they gather the same shards).
    rank = dist.get_rank()
    pixel_values = torch.zeros(PATCHES, 3 * 2 * 14 * 14)
    grid = torch.tensor([[1, 8, 8]])
    padding = pad_vision_calls(model, 1 if rank == 1 else 0, torch.device("cpu"))  # agree, dummy call on 0
    if rank == 1:
        features = model.get_image_features(pixel_values=pixel_values, image_grid_thw=grid, return_dict=True)
        features.pooler_output[0].sum().backward()
    if padding is not None:
        padding.backward()
    result["padding"] = None if padding is None else {"value": padding.item(), "grad": padding.requires_grad}
    Path(out, f"rank{rank}.json").write_text(json.dumps(result))


def test_zero3_group_sharing_matches_stock_trl(tiny_model_dir, tmp_path):
    from launch_helpers import env, launch_command, write_zero3_cpu_variant

    config = write_zero3_cpu_variant(ROOT / "recipes/accelerate/zero3.yaml", tmp_path / "config")
    command = launch_command(config, __file__, str(tmp_path), str(tiny_model_dir))
    done = subprocess.run(
        command,
        env={**env(), "PYTHONPATH": pythonpath_with_tests()},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "group sharing off" not in done.stderr  # no fallback to TRL's vision code under ZeRO-3
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]

    for which in ("stock", "shared"):
        for r in ranks:
            assert (r[which]["engine"], r[which]["zero_stage"]) == ("DeepSpeedEngine", 3)
            counts = r[which]["partitioned"]
            assert counts["partitioned"] == counts["params"] > 0  # every parameter split over the 2 ranks
            assert counts["local_numel"] <= counts["full_numel"] // 2 + counts["params"]
        assert ranks[0][which]["weights"] == ranks[1][which]["weights"], f"{which}: ranks diverged"
    stock, shared = ranks[0]["stock"], ranks[0]["shared"]
    assert shared["fallbacks"] == {}
    assert shared["loss"] == pytest.approx(stock["loss"], rel=1e-5, abs=1e-7) and len(stock["loss"]) == 1
    assert any(".visual." in n for n in stock["changed"]) and any(
        "language_model" in n for n in stock["changed"]
    )
    assert shared["changed"] == stock["changed"]
    for name, value in stock["weights"].items():
        assert shared["weights"][name] == pytest.approx(value, rel=1e-5, abs=1e-6), name

    # Per rank and step: one prompt of G rows, one image. Stock: G copies in generation and in the reference
    # model's pass (no grad) and in the training pass (grad). Shared: the image once in each.
    for r in ranks:
        assert r["stock"]["rows"] == {"grad": G * PATCHES, "no_grad": 2 * G * PATCHES}
        assert r["shared"]["rows"] == {"grad": PATCHES, "no_grad": 2 * PATCHES}
    assert ranks[0]["padding"] == {"value": 0.0, "grad": True}  # one dummy call, joined to the graph
    assert ranks[1]["padding"] is None


if __name__ == "__main__":
    _worker(*sys.argv[1:3])
