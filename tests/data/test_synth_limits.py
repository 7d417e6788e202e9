"""Absurd sizes in ``crowdvlm data synth`` are refused with the limit before anything is allocated.

Each command runs in a subprocess whose address space is capped (so a size that reaches the allocator fails
there at once, instead of taking the machine's memory): the refusal must come first, as a usage error.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys

import pytest

from crowdvlm.data.synth_limits import MAX_COUNT, MAX_IMAGES, MAX_SIDE

ADDRESS_SPACE = 3 * 1024**3  # bytes


def _capped() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--n", "4000000000"], f"at most {MAX_IMAGES} images"),
        (["--n", "1", "--size", "100000x100000"], f"at most {MAX_SIDE} pixels per side"),
        (["--n", "1", "--max-count", "2000000000"], f"at most {MAX_COUNT} objects per image"),
    ],
)
def test_synth_refuses_absurd_sizes_with_the_limit(tmp_path, args, message):
    argv = [
        sys.executable,
        "-m",
        "crowdvlm",
        "data",
        "synth",
        "--out",
        str(tmp_path / "s"),
        "--no-progress",
        *args,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, preexec_fn=_capped, env=env)
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "s" / "images").exists()  # refused before anything was written
