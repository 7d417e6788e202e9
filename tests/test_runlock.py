"""One run per folder: a second run is refused naming the holder (or waits for it, when asked); a lock left by a
dead run is taken over; a reader can ask who holds a folder without locking it."""

import json
import logging
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from crowdvlm.runlock import LOCK_FILE, RunLock, RunLocked, describe_holder, holder_of

SRC = str(Path(__file__).resolve().parents[1] / "src")


def test_a_second_lock_on_the_folder_is_refused_until_released(tmp_path):
    with RunLock(tmp_path / "run", what="crowdvlm train sft") as lock:
        holder = json.loads(lock.path.read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        with pytest.raises(RunLocked) as refused:
            RunLock(tmp_path / "run").acquire()
        message = str(refused.value)
        assert str(tmp_path / "run") in message and f"pid {os.getpid()} on {socket.gethostname()}" in message
        assert "crowdvlm train sft" in message and "\n" not in message
    assert not (tmp_path / "run" / LOCK_FILE).exists()
    with RunLock(tmp_path / "run"):
        pass


def test_a_live_holder_in_another_process_is_refused(tmp_path):
    code = (
        "import sys, time; from crowdvlm.runlock import RunLock; "
        f"lock = RunLock({str(tmp_path)!r}, what='holder').acquire(); print('held', flush=True); "
        "sys.stdin.readline()"
    )
    env = {**os.environ, "PYTHONPATH": SRC}
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
    )
    try:
        assert proc.stdout.readline().strip() == b"held"
        with pytest.raises(RunLocked, match=f"pid {proc.pid} on .*holder"):
            RunLock(tmp_path).acquire()
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
    with RunLock(tmp_path):  # released when its holder exited
        pass


def test_a_stale_lock_of_a_dead_process_is_taken_over_with_a_warning(tmp_path, caplog):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    holder = {"pid": dead.pid, "host": socket.gethostname(), "started": 0, "command": "crowdvlm eval"}
    (tmp_path / LOCK_FILE).write_text(json.dumps(holder))
    with caplog.at_level(logging.WARNING, logger="crowdvlm.runlock"), RunLock(tmp_path) as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    assert f"pid {dead.pid}" in caplog.text and "no longer running" in caplog.text


def test_train_and_eval_refuse_a_folder_another_run_holds(tmp_path, capsys):
    from crowdvlm.cli import main as crowdvlm
    from crowdvlm.demo.base_model import BASE_DIR
    from endpoint_server import write_manifest

    data = write_manifest(tmp_path / "d", [("ok", 3), ("ok", 5)])
    from crowdvlm.experiments.yamlfile import PACKAGE_DIR

    recipe = PACKAGE_DIR / "recipes" / "demo" / "sft.yaml"
    commands = {
        "train": ["train", "sft", "--config", str(recipe), "--model_name_or_path", str(BASE_DIR)]
        + ["--dataset", str(data), "--output_dir", str(tmp_path / "out")],
        "eval": ["eval", "--backend", "openai", "--model", "fake", "--base-url", "http://127.0.0.1:9/v1"]
        + ["--api-key", "k", "--data", str(data), "--out", str(tmp_path / "out")],
    }
    for command, argv in commands.items():
        with RunLock(tmp_path / "out", what="crowdvlm train grpo"):
            assert crowdvlm(argv) == 2, command
        err = capsys.readouterr().err
        assert f"{tmp_path / 'out'} is in use by another run: pid {os.getpid()}" in err, command
        assert not (tmp_path / "out").exists(), command  # nothing written; the holder's lock made the folder


def test_a_waiting_lock_takes_the_folder_once_its_holder_releases_it(tmp_path, caplog, lock_waited):
    holder = RunLock(tmp_path, what="crowdvlm experiment report a.yaml").acquire()
    with caplog.at_level(logging.WARNING, logger="crowdvlm.runlock"), pytest.raises(RunLocked):
        RunLock(tmp_path, wait=0.3).acquire()  # still held when the wait is over: refused as without one
    lock_waited.clear()

    def release_when_waited_for():
        lock_waited.wait(timeout=60)
        holder.release()

    releaser = threading.Thread(target=release_when_waited_for)
    releaser.start()
    try:
        with RunLock(tmp_path, what="second", wait=60) as lock:
            assert lock_waited.is_set() and not holder.held
            assert json.loads(lock.path.read_text())["command"] == "second"
    finally:
        releaser.join(timeout=60)
    assert (
        f"is in use by pid {os.getpid()}" in caplog.text
        and "crowdvlm experiment report a.yaml" in caplog.text
    )


def test_holder_of_names_a_live_holder_and_takes_no_lock(tmp_path):
    assert holder_of(tmp_path) is None  # no lock file
    with RunLock(tmp_path, what="crowdvlm experiment run a.yaml"):
        holder = holder_of(tmp_path)
        assert holder["pid"] == os.getpid() and holder["command"] == "crowdvlm experiment run a.yaml"
        assert describe_holder(holder).startswith(f"pid {os.getpid()} on {socket.gethostname()} since ")
    assert holder_of(tmp_path) is None  # released
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / LOCK_FILE).write_text(
        json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": 0})
    )
    assert holder_of(tmp_path) is None  # a stale lock file: no holder
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": 1, "host": "another-node", "started": 0}))
    assert holder_of(tmp_path) is None  # nobody holds its flock
    with RunLock(tmp_path):  # the probes left no lock behind
        pass
