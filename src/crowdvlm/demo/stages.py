"""Resumable stages with progress and an ETA: a stage whose marker exists is skipped.

Each stage owns a folder. When its work finishes, a marker ``.done.json`` (wall time and whatever the stage
returns) is written there last, so an interrupted demo resumes at the first stage without a marker, and a
stage killed halfway is redone from scratch (its folder is cleared first).

The ETA weighs the remaining stages by their estimated cost (seconds on the reference 2-core machine),
rescaled by how the stages finished in this session compared with their estimates.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["DONE_FILE", "Stage", "is_done", "read_marker", "run_stages"]

logger = logging.getLogger(__name__)

DONE_FILE = ".done.json"


@dataclass
class Stage:
    """One unit of work of the demo.

    Attributes:
        name: what the progress line shows, e.g. ``"train grpo_fgrpr lr=2e-05 seed=0"``.
        folder: where the stage writes; holds the marker once done.
        estimate_s: expected seconds on the reference machine (for the ETA only).
        run: does the work; returns a JSON-serialisable dict kept in the marker (or None).
        clear: empty ``folder`` before a (re)run, so half-written outputs never mix with new ones.
    """

    name: str
    folder: Path
    estimate_s: float
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


def _fmt_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def run_stages(
    stages: Sequence[Stage], *, progress: bool = True, echo: Callable[[str], None] | None = None
) -> dict:
    """Run the stages in order, skipping finished ones; return ``{"stages": [...], "wall_s": float}``.

    Args:
        stages: the stages; their order is the execution order.
        progress: show a tqdm bar over the stages (with ETA) and echo one line per stage.
        echo: where stage lines go (default: printed above the progress bar; tests may collect them).
    """
    from tqdm.auto import tqdm

    start = time.perf_counter()
    todo = [s for s in stages if not is_done(s.folder)]
    skipped = len(stages) - len(todo)
    if echo is None:
        echo = tqdm.write  # prints above the bar instead of through it
    remaining_estimate = sum(s.estimate_s for s in todo)
    spent, estimated_done = 0.0, 0.0
    records = []
    bar = tqdm(total=len(stages), initial=skipped, unit="stage", desc="demo", disable=not progress,
               bar_format="{desc} {n_fmt}/{total_fmt} stages |{bar:20}| {elapsed} {postfix}")  # fmt: skip
    if skipped:
        echo(f"resuming: {skipped} of {len(stages)} stages already done")
    with bar:
        for i, stage in enumerate(todo):
            ratio = spent / estimated_done if estimated_done > 0 else 1.0
            eta = remaining_estimate * ratio
            bar.set_postfix_str(f"ETA {_fmt_duration(eta)} | {stage.name}")
            if stage.clear and stage.folder.exists():
                shutil.rmtree(stage.folder)
            stage.folder.mkdir(parents=True, exist_ok=True)
            t0 = time.perf_counter()
            info = stage.run() or {}
            wall = time.perf_counter() - t0
            marker = {"stage": stage.name, "wall_s": round(wall, 2), "finished": time.time(), **info}
            (stage.folder / DONE_FILE).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
            spent += wall
            estimated_done += stage.estimate_s
            remaining_estimate -= stage.estimate_s
            records.append(marker)
            bar.update(1)
            if progress:
                echo(f"[{skipped + i + 1}/{len(stages)}] {stage.name}: {_fmt_duration(wall)}")
    return {"stages": records, "skipped": skipped, "wall_s": round(time.perf_counter() - start, 2)}
