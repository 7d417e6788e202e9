"""Two-process DDP (gloo, CPU): the group-sharing trainer stays in sync across ranks and matches stock TRL.

The vision tower runs outside DDP's forward in the shared training pass; this checks that its gradients are
still all-reduced (identical weights on both ranks) and equal to stock TRL's. Run as a test (it launches
``torchrun`` twice on this file) or, as torchrun does, as a script: ``python this.py {stock|shared} OUT MODEL``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from sharing_helpers import G, multiprocess_config, multiprocess_trainer, pythonpath_with_tests


def _worker(which: str, out: str, model_dir: str) -> None:
    import torch

    from grpo_helpers import count_vision_rows, random_image_dataset

    torch.set_num_threads(1)
    dataset = random_image_dataset()
    trainer = multiprocess_trainer(which, model_dir, multiprocess_config(out, beta=0.0, max_steps=2), dataset)
    rows = count_vision_rows(trainer.model.model.visual)
    trainer.train()
    result = {
        "wrapper": type(trainer.model_wrapped).__name__,
        "rows": rows,
        "grad_norms": [log["grad_norm"] for log in trainer.state.log_history if "grad_norm" in log],
        "weights": {n: p.detach().double().sum().item() for n, p in trainer.model.named_parameters()},
    }
    Path(out, f"rank{os.environ['RANK']}.json").write_text(json.dumps(result))


def _free_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def test_two_process_ddp_matches_stock(tiny_model_dir, tmp_path):
    results = {}
    for which in ("stock", "shared"):
        out = tmp_path / which
        out.mkdir()
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            _free_port(),
        ]
        cmd += [__file__, which, str(out), str(tiny_model_dir)]
        env = {
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "HF_HUB_OFFLINE": "1",
            "PYTHONPATH": pythonpath_with_tests(),
        }
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        results[which] = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]

    for which, ranks in results.items():
        assert [r["wrapper"] for r in ranks] == ["DistributedDataParallel"] * 2, which
        assert ranks[0]["weights"] == ranks[1]["weights"], f"{which}: ranks diverged"
    stock, shared = results["stock"][0], results["shared"][0]
    assert shared["grad_norms"] == pytest.approx(stock["grad_norms"], rel=1e-5)
    for name, value in stock["weights"].items():
        assert shared["weights"][name] == pytest.approx(value, rel=1e-5, abs=1e-5), name
    # per rank and step: one prompt of G rows, one 64-row image; generation (no grad) + training pass (grad)
    assert stock["rows"] == {"grad": 2 * G * 64, "no_grad": 2 * G * 64}
    assert shared["rows"] == {"grad": 2 * 64, "no_grad": 2 * 64}


if __name__ == "__main__":
    _worker(*sys.argv[1:4])
