"""Resumable stages with progress and an ETA measured from the stages already done.

Each stage owns a folder. When its work finishes, a marker ``.done.json`` (its kind, its size in work units,
its wall time and whatever the stage returns) is written there last, so an interrupted experiment resumes at
the first stage without a marker, and a stage killed halfway is redone from scratch (its folder is cleared).

The ETA holds no guessed costs: for each kind of stage (synthesise, train-sft, train-grpo, evaluate) it
divides the measured seconds of the finished stages of that kind, this session's and earlier ones', by
their work units (images, image passes) and multiplies by the units left. Kinds with no finished stage yet
are shown as a count of stages not yet measured.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["DONE_FILE", "Stage", "eta", "is_done", "read_marker", "run_stages"]


DONE_FILE = ".done.json"


@dataclass
class Stage:
    """One unit of work of an experiment.

    Attributes:
        name: what the progress line shows, e.g. ``"train grpo_fgrpr lr=2e-05 seed=0"``.
        folder: where the stage writes; holds the marker once done.
        kind: stages of one kind share a measured rate (seconds per unit) for the ETA.
        units: the stage's size in its kind's unit (images synthesised or evaluated, image passes trained).
        run: does the work; returns a JSON-serialisable dict kept in the marker (or None).
        clear: empty ``folder`` before a (re)run, so half-written outputs never mix with new ones.
    """

    name: str
    folder: Path
    kind: str
    units: float
    run: Callable[[], dict[str, Any] | None]
    clear: bool = True


def is_done(folder: str | Path) -> bool:
    """Whether the stage owning ``folder`` has finished."""
    return (Path(folder) / DONE_FILE).is_file()


def read_marker(folder: str | Path) -> dict[str, Any]:
    """The marker of a finished stage (raises ``FileNotFoundError`` naming the folder if it is not done)."""
    path = Path(folder) / DONE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the stage writing {folder} has not finished")
    return json.loads(path.read_text(encoding="utf-8"))


def fmt_duration(seconds: float) -> str:
    """``"4m05s"`` or ``"12s"``.

    >>> fmt_duration(245), fmt_duration(12.4)
    ('4m05s', '12s')
    """
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def eta(done: Sequence[dict[str, Any]], todo: Sequence[Stage]) -> tuple[float, int]:
    """Seconds left, from the measured rate of each kind, and how many stages have no measured kind yet.

    >>> done = [{"kind": "eval", "units": 100, "wall_s": 5.0}]
    >>> eta(done, [Stage("e", Path("x"), "eval", 300, lambda: None), Stage("t", Path("y"), "train", 8, lambda: None)])
    (15.0, 1)
    """
    spent: dict[str, list[float]] = {}
    for marker in done:
        if "kind" in marker and marker.get("units"):
            wall, units = spent.setdefault(marker["kind"], [0.0, 0.0])
            spent[marker["kind"]] = [wall + float(marker["wall_s"]), units + float(marker["units"])]
    seconds, unmeasured = 0.0, 0
    for stage in todo:
        if stage.kind in spent:
            wall, units = spent[stage.kind]
            seconds += stage.units * wall / units
        else:
            unmeasured += 1
    return seconds, unmeasured


def run_stages(
    stages: Sequence[Stage],
    *,
    progress: bool = True,
    echo: Callable[[str], None] | None = None,
    desc: str = "run",
) -> dict:
    """Run the stages in order, skipping finished ones; return ``{"stages": [...], "skipped", "wall_s"}``.

    Args:
        stages: the stages; their order is the execution order.
        progress: show a tqdm bar over the stages (with the ETA) and echo one line per stage.
        echo: where stage lines go (default: printed above the progress bar; tests may collect them).
        desc: the bar's label.
    """
    from tqdm.auto import tqdm

    start = time.perf_counter()
    done = [read_marker(s.folder) for s in stages if is_done(s.folder)]
    todo = [s for s in stages if not is_done(s.folder)]
    skipped = len(stages) - len(todo)
    if echo is None:
        echo = tqdm.write  # prints above the bar instead of through it
    records = []
    bar = tqdm(
        total=len(stages),
        initial=skipped,
        unit="stage",
        desc=desc,
        disable=not progress,
        bar_format="{desc} {n_fmt}/{total_fmt} stages |{bar:20}| {elapsed} {postfix}",
    )
    if skipped:
        echo(f"resuming: {skipped} of {len(stages)} stages already done")
    with bar:
        for i, stage in enumerate(todo):
            left, unmeasured = eta(done, todo[i:])
            shown = f"ETA {fmt_duration(left)}" + (f" + {unmeasured} unmeasured" if unmeasured else "")
            bar.set_postfix_str(f"{shown} | {stage.name}")
            if stage.clear and stage.folder.exists():
                shutil.rmtree(stage.folder)
            stage.folder.mkdir(parents=True, exist_ok=True)
            t0 = time.perf_counter()
            info = stage.run() or {}
            wall = time.perf_counter() - t0
            marker = {
                "stage": stage.name,
                "kind": stage.kind,
                "units": stage.units,
                "wall_s": round(wall, 2),
                "finished": time.time(),
                **info,
            }
            (stage.folder / DONE_FILE).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
            done.append(marker)
            records.append(marker)
            bar.update(1)
            if progress:
                left, unmeasured = eta(done, todo[i + 1 :])
                tail = f"; ETA {fmt_duration(left)}" + (
                    f" + {unmeasured} stages unmeasured" if unmeasured else ""
                )
                echo(f"[{skipped + i + 1}/{len(stages)}] {stage.name}: {fmt_duration(wall)}{tail}")
    return {"stages": records, "skipped": skipped, "wall_s": round(time.perf_counter() - start, 2)}
