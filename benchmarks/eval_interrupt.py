"""How fast Ctrl-C stops `crowdvlm eval --backend openai` with requests hanging in flight, against how long
those requests would have kept it alive.

Run: .venv/bin/python benchmarks/eval_interrupt.py [--repeats 3]

Each repeat starts a local OpenAI-compatible server on 127.0.0.1 (tests/endpoint_server.py) that answers the
first batch and then holds every request for 30 s; once the second batch's requests are in flight, it sends
SIGINT and times the command's exit. Prints each time, the exit codes (130 expected) and the ratio to the
30 s the hanging requests alone would have taken (their retries would add more).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from endpoint_server import HANG_S, ctrl_c_as_at_a_terminal, serve, write_manifest  # noqa: E402 - the test server lives in tests/


def _one(folder: Path) -> tuple[int, float]:
    manifest = write_manifest(folder, [("ok", 1), ("ok", 2)] + [("hang", n) for n in range(3, 9)])
    out = folder / "run"
    with serve() as (handler, url):
        argv = [
            sys.executable,
            "-m",
            "crowdvlm",
            "eval",
            "--backend",
            "openai",
            "--model",
            "m",
            "--base-url",
            url,
            "--data",
            str(manifest),
            "--out",
            str(out),
            "--no-progress",
            "--batch-size",
            "2",
            "--concurrency",
            "2",
        ]
        env = {**os.environ, "OPENAI_API_KEY": "sk-benchmark"}
        proc = subprocess.Popen(
            argv,
            env=env,
            stderr=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            preexec_fn=ctrl_c_as_at_a_terminal,
        )
        deadline = time.monotonic() + 120
        while not (handler.calls["hang"] == 2 and (out / "predictions.jsonl").exists()):
            if time.monotonic() > deadline:
                proc.kill()
                raise SystemExit("the run never reached its second batch")
            time.sleep(0.05)
        time.sleep(0.5)  # the hanging requests are well under way
        start = time.monotonic()
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=HANG_S * 2)
        return code, time.monotonic() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="interrupted runs (default: 3)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = [_one(Path(tmp) / str(n)) for n in range(args.repeats)]
    seconds = [s for _, s in results]
    print(f"exit codes: {[code for code, _ in results]}")
    print(
        f"SIGINT -> exit: {', '.join(f'{s:.2f}' for s in seconds)} s (median {statistics.median(seconds):.2f} s)"
    )
    print(f"hanging requests alone: {HANG_S:.0f} s -> {HANG_S / statistics.median(seconds):.0f}x sooner")
    return 0


if __name__ == "__main__":
    sys.exit(main())
