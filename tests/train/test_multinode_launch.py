"""The documented multi-node launch, for real: 2 "machines" x 1 process on 127.0.0.1, DeepSpeed ZeRO-3 (every
parameter partitioned), 2 GRPO steps on the tiny model. Each machine runs the command of docs/cluster.md with
its own ``--machine_rank``; both must finish, hold the same model at every ``ranks`` event and train it."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys

from launch_helpers import (
    ACCELERATE,
    DEMO_BASE,
    ROOT,
    check_ranks_agree_and_trained,
    env,
    launch,
    logged_steps,
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def machine_command(base: list[str], rank: int, port: int) -> list[str]:
    """``base`` (an `accelerate launch` command) as machine ``rank`` of 2 runs it."""
    module_flag = base.index("-m", 3)  # the `-m crowdvlm` after accelerate's own options
    multinode = [
        "--num_machines", "2", "--machine_rank", str(rank),
        "--main_process_ip", "127.0.0.1", "--main_process_port", str(port),
    ]  # fmt: skip
    return base[:module_flag] + multinode + base[module_flag:]


def built_shm_op(tmp_path_factory) -> dict[str, str]:
    """The environment of both machines, with DeepSpeed's CPU communication op built beforehand in a folder of
    this interpreter's own (kept between sessions): the two ranks do not race to JIT-build it, and checkouts at
    other paths, whose include paths differ, do not rebuild it under each other in the shared
    ``~/.cache/torch_extensions`` while the ranks wait on its lock (minutes on a loaded machine)."""
    digest = hashlib.sha1(sys.executable.encode()).hexdigest()[:12]
    folder = tmp_path_factory.getbasetemp().parent / f"torch-extensions-{digest}"
    machine_env = dict(env(), TORCH_EXTENSIONS_DIR=str(folder))
    build = [sys.executable, "-c", "from deepspeed.comm.torch import build_shm_op; build_shm_op()"]
    done = subprocess.run(build, env=machine_env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return machine_env


def test_grpo_zero3_on_two_machines(dots_manifest, tmp_path, tmp_path_factory):
    from launch_helpers import write_zero3_cpu_variant

    machine_env = built_shm_op(tmp_path_factory)
    config = write_zero3_cpu_variant(ACCELERATE / "zero3.yaml", tmp_path / "zero3")
    out = tmp_path / "run"
    base = launch(config, "grpo", out, DEMO_BASE, dots_manifest, "--max_steps", "2")
    port = free_port()
    logs = [tmp_path / f"machine{rank}.log" for rank in (0, 1)]
    machines = []
    try:
        for rank, log in enumerate(
            logs
        ):  # output to files: a full pipe would stall one machine and both with it
            with log.open("w") as sink:
                machines.append(
                    subprocess.Popen(
                        machine_command(base, rank, port),
                        env=machine_env,
                        cwd=ROOT,
                        stdout=sink,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )  # fmt: skip
                )
        for machine in machines:
            machine.wait(timeout=420)
    finally:
        for machine in machines:  # the launcher and the worker it started (its own process group)
            if machine.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(machine.pid, signal.SIGKILL)
    for rank, machine in enumerate(machines):
        assert machine.returncode == 0, f"machine {rank}:\n{logs[rank].read_text()[-4000:]}"
    assert logged_steps(out) == [1, 2]
    end = check_ranks_agree_and_trained(out)
    assert end["ranks"][0]["partitioned"] > 0  # ZeRO-3 really split the parameters across the machines
