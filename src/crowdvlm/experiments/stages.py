"""Resumable stages with progress and an ETA measured from the stages already done.

Each stage owns a folder. When its work finishes, a marker ``.done.json`` (its kind, its size in work units,
its wall time, the fingerprint of its inputs and whatever the stage returns) is written there last, and
atomically, so an interrupted experiment resumes at the first stage without a marker. An empty or unreadable
marker (a disk that filled while it was written) counts as not done, with a warning naming it.

**Ownership.** A stage writes ``.owner.json`` (the experiment's id and the stage's fingerprint) into its
folder before it starts, and only ever clears a folder holding this experiment's owner marker: a folder it
did not create (a user's files, another experiment's) is refused before any stage runs. A stage killed
halfway is redone from scratch, except a *resumable* one (training) whose inputs did not change: it keeps
its folder and continues from its last checkpoint.

**Change.** A finished stage whose fingerprint (what it depends on: the recipe after overrides, the base
model, the data) differs from the one it was made with is refused before any stage runs, naming the stage
and the keys that changed; ``redo_changed`` redoes it (and, their fingerprints changing with it, the stages
that depend on it).

The ETA holds no guessed costs: for each kind of stage (synthesise, train-sft, train-grpo, evaluate) it
divides the measured seconds of the finished stages of that kind, this session's and earlier ones', by
their work units (images, image passes) and multiplies by the units left. Kinds with no finished stage yet
are shown as a count of stages not yet measured.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crowdvlm.atomic import atomic_write_json, os_reason
from crowdvlm.errors import RunError, UsageError
from crowdvlm.experiments.fingerprints import changed_keys, digest
from crowdvlm.runlock import LOCK_FILE

__all__ = [
    "DONE_FILE",
    "OWNER_FILE",
    "Stage",
    "eta",
    "is_done",
    "read_json_file",
    "read_marker",
    "read_owner",
    "run_stages",
]

logger = logging.getLogger(__name__)

DONE_FILE = ".done.json"
OWNER_FILE = ".owner.json"  # {"experiment": id, "fingerprint": ...}: this experiment made the folder


@dataclass
class Stage:
    """One unit of work of an experiment.

    Attributes:
        name: what the progress line shows, e.g. ``"train grpo_fgrpr lr=2e-05 seed=0"``.
        folder: where the stage writes; holds the marker once done.
        kind: stages of one kind share a measured rate (seconds per unit) for the ETA.
        units: the stage's size in its kind's unit (images synthesised or evaluated, image passes trained).
        run: does the work; returns a JSON-serialisable dict kept in the marker (or None).
        inputs: what the stage depends on (JSON-able; its digest is the stage's fingerprint), or a function
            returning it. A finished stage made with other inputs is refused or redone.
        resumable: a killed run keeps its folder and continues (training from its last checkpoint) when its
            inputs are unchanged; ``run`` is then called with ``resume=True``.
    """

    name: str
    folder: Path
    kind: str
    units: float
    run: Callable[..., dict[str, Any] | None]
    inputs: dict[str, Any] | Callable[[], dict[str, Any]] = field(default_factory=dict)
    resumable: bool = False

    def resolved_inputs(self) -> dict[str, Any]:
        return self.inputs() if callable(self.inputs) else self.inputs

    @property
    def fingerprint(self) -> str:
        """The digest of the stage's inputs (what its ``.done.json`` records)."""
        return digest(self.resolved_inputs())


def _read_json(path: Path, what: str) -> dict[str, Any] | None:
    """A JSON object file, or None if it is missing; empty or unreadable: None with a warning naming it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        logger.warning("%s: unreadable %s (%s): treated as not there", path, what, err)
        return None
    if not isinstance(data, dict):
        logger.warning("%s: unreadable %s (not a JSON object): treated as not there", path, what)
        return None
    return data


def read_json_file(path: str | Path) -> dict[str, Any]:
    """A JSON object file a stage wrote (metrics, localisation); every failure names the file.

    Raises:
        RunError: missing, unreadable or not a JSON object.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunError(f"{path}: cannot read it ({err})") from err
    if not isinstance(data, dict):
        raise RunError(f"{path}: expected a JSON object")
    return data


def is_done(folder: str | Path) -> bool:
    """Whether the stage owning ``folder`` has finished (an unreadable marker: not finished, with a warning)."""
    return _read_json(Path(folder) / DONE_FILE, "stage marker") is not None


def read_marker(folder: str | Path) -> dict[str, Any]:
    """The marker of a finished stage (raises ``FileNotFoundError`` naming the folder if it is not done)."""
    marker = _read_json(Path(folder) / DONE_FILE, "stage marker")
    if marker is None:
        raise FileNotFoundError(
            f"{Path(folder) / DONE_FILE} is missing: the stage writing {folder} has not finished"
        )
    return marker


def read_owner(folder: str | Path) -> dict[str, Any] | None:
    """The owner marker of a folder an experiment created, or None."""
    return _read_json(Path(folder) / OWNER_FILE, "owner marker")


def _owned_by(folder: Path, owner: str) -> bool:
    marker = read_owner(folder)
    return marker is not None and marker.get("experiment") == owner


def _foreign(folder: Path, owner: str) -> bool:
    """Whether ``folder`` holds something this experiment did not create (an empty folder is adopted)."""
    if not folder.exists():
        return False
    if not folder.is_dir():
        return True
    return not _owned_by(folder, owner) and any(p.name != LOCK_FILE for p in folder.iterdir())


def _prepare(stage: Stage, owner: str, fingerprint: str) -> bool:
    """Make ``stage.folder`` this stage's: cleared if it is ours, kept to resume; True when resuming."""
    folder = stage.folder
    resume = False
    if folder.exists():
        marker = read_owner(folder) or {}
        if marker.get("experiment") != owner and any(folder.iterdir()):  # _plan refused it already
            raise RunError(f"{folder} was not created by this experiment: refusing to clear it")
        resume = stage.resumable and marker.get("fingerprint") == fingerprint
        if not resume:
            try:
                shutil.rmtree(folder)
            except OSError as err:
                raise RunError(f"cannot clear {folder} to redo its stage: {os_reason(err)}") from err
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RunError(f"cannot create {folder}: {os_reason(err)}") from err
    atomic_write_json(
        folder / OWNER_FILE, {"experiment": owner, "fingerprint": fingerprint, "stage": stage.name}
    )
    return resume


def _plan(stages: Sequence[Stage], owner: str, redo_changed: bool) -> tuple[list, list[Stage], dict]:
    """Finished markers, the stages to run, and every stage's (fingerprint, inputs); refuses before any runs.

    Raises:
        UsageError: a finished stage was made with other inputs (without ``redo_changed``), or a stage's
            folder holds files this experiment did not create.
    """
    done, todo, changed, foreign, prints = [], [], [], [], {}
    for stage in stages:
        marker = _read_json(stage.folder / DONE_FILE, "stage marker")
        inputs = stage.resolved_inputs() if marker is None or "fingerprint" in marker else {}
        prints[id(stage)] = (digest(inputs), inputs)
        if marker is not None and "fingerprint" in marker and marker["fingerprint"] != prints[id(stage)][0]:
            changed.append((stage, changed_keys(marker.get("inputs") or {}, inputs)))
            marker = None if redo_changed else marker
        if marker is not None:
            done.append(marker)
            continue
        if _foreign(stage.folder, owner):
            foreign.append(stage.folder)
        todo.append(stage)
    if foreign:
        more = f" (and {len(foreign) - 1} more folders)" if len(foreign) > 1 else ""
        raise UsageError(
            f"{foreign[0]} holds files this experiment did not create{more}: a stage would clear it; move "
            "it away or choose another --out (nothing was touched)"
        )
    if changed and not redo_changed:
        shown = "; ".join(
            f"{s.name} ({s.folder}): {', '.join(keys[:4]) or 'inputs'} changed" for s, keys in changed[:3]
        )
        more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        raise UsageError(
            f"{len(changed)} finished stage(s) were made with other inputs than the experiment now asks for: "
            f"{shown}{more}. Pass --redo-changed to redo them (and what depends on them), restore the old "
            "inputs, or choose another --out"
        )
    for stage, keys in changed:
        logger.warning("%s: redoing, its inputs changed (%s)", stage.name, ", ".join(keys[:4]) or "inputs")
    return done, todo, prints


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
    owner: str,
    redo_changed: bool = False,
    progress: bool = True,
    echo: Callable[[str], None] | None = None,
    desc: str = "run",
) -> dict:
    """Run the stages in order, skipping finished ones; return ``{"stages": [...], "skipped", "wall_s"}``.

    Args:
        stages: the stages; their order is the execution order.
        owner: the experiment's id (see :data:`OWNER_FILE`): only folders it owns are ever cleared.
        redo_changed: redo finished stages whose inputs changed, instead of refusing to go on.
        progress: show a tqdm bar over the stages (with the ETA) and echo one line per stage.
        echo: where stage lines go (default: printed above the progress bar; tests may collect them).
        desc: the bar's label.

    Raises:
        UsageError: before any stage runs, a finished stage made with other inputs or a folder that holds
            files this experiment did not create.
    """
    from tqdm.auto import tqdm

    start = time.perf_counter()
    done, todo, prints = _plan(stages, owner, redo_changed)
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
            fingerprint, inputs = prints[id(stage)]
            (stage.folder / DONE_FILE).unlink(missing_ok=True)  # a changed stage being redone, or torn
            resume = _prepare(stage, owner, fingerprint)
            if resume:
                echo(f"{stage.name}: continuing the interrupted run in {stage.folder}")
            t0 = time.perf_counter()
            info = (stage.run(resume=True) if resume else stage.run()) or {}
            wall = time.perf_counter() - t0
            marker = {
                "stage": stage.name,
                "kind": stage.kind,
                "units": stage.units,
                "wall_s": round(wall, 2),
                "finished": time.time(),
                "fingerprint": fingerprint,
                "inputs": inputs,
                **info,
            }
            atomic_write_json(stage.folder / DONE_FILE, marker, default=str)
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
