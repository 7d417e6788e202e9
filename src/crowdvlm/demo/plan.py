"""The experiment plan: every size, range, seed and learning rate of the demo, decided before it runs.

A :class:`DemoPlan` is plain data. ``default_plan()`` is the 30-minute experiment, ``quick_plan()`` the
5-minute smoke run; ``plan.with_overrides({"n_train": 16})`` (the CLI's ``--set key=value``) shrinks either
one further, which is how the CI test runs the whole pipeline in a minute. The plan is written to
``plan.json`` in the output folder, and a resumed demo refuses a plan that differs from the one that
produced the stages already on disk.

Why these numbers (the pilot in the project's reference notes, run on this machine):

* **Counts 0-40, a weak base.** With counts 0-20 and a base at 34 % exact accuracy, the 0/1 reward still had
  signal in two groups of three and binary GRPO tied SFT; the paper's C1 needs exact hits to be rare. Wider
  counts and a base trained only until it counts roughly put the 0/1 reward in that regime, and give the
  fuzzy reward's partial credit room to matter (C2).
* **OOD counts inside the trained range.** No arm extrapolated past the largest trained count, so "better on
  larger counts" (C3) is tested on OOD images whose counts are large but still inside 0-40.
* **Same images, same steps, same lr procedure for every arm.** Each seed draws one training set that all
  three arms see once; each arm's lr is picked by the same grid on the same validation set.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ARMS", "DemoPlan", "default_plan", "quick_plan"]

#: The three arms trained from the base: name -> (trainer, rewards).
ARMS: dict[str, tuple[str, tuple[str, ...]]] = {
    "sft": ("sft", ()),
    "grpo_binary": ("grpo", ("binary", "answer_format")),
    "grpo_fgrpr": ("grpo", ("fgrpr", "answer_format")),
}


@dataclass(frozen=True)
class DemoPlan:
    """Everything that decides what the demo computes (its outputs are a function of the plan)."""

    # ---- data: five in-domain styles stand in for the paper's five datasets; one unseen style is OOD
    styles: tuple[str, ...] = ("dots", "people", "animals", "vehicles", "plants")
    ood_style: str = (
        "rings"  # the far shift that decides C3 (thin hollow outlines: the base undercounts them)
    )
    near_ood_style: str = (
        "shapes"  # a near shift, reported beside it (filled squares/triangles/disks); "" = none
    )
    # One question for every image. The tiny model knows only the words it was trained on: asking about
    # "rings" (a word no training prompt holds) made the base answer "<answer></answer>" on 97 % of OOD images,
    # a vocabulary failure rather than a counting one. With one question the OOD shift is purely visual.
    question: str = "How many objects are in the image?"
    image_size: int = 112
    train_counts: tuple[int, int] = (0, 40)
    test_counts: tuple[int, int] = (0, 40)
    ood_counts: tuple[int, int] = (10, 40)
    n_train: int = 2000  # images per seed, shared by every arm (split evenly over the styles)
    n_val: int = 250  # in-domain validation images for the lr grid
    n_test: int = 1000  # in-domain test images (split evenly over the styles)
    n_ood: int = 500  # out-of-domain test images
    data_seed: int = 1000  # test/val sets use this; training set of seed s uses data_seed + 1 + s

    # ---- arms
    seeds: tuple[int, ...] = (0, 1, 2)
    sft_batch_size: int = 16
    grpo_prompts_per_step: int = 4
    num_generations: int = 8
    max_completion_length: int = 12
    temperature: float = 1.0
    beta: float = 0.04
    # lr grid per arm family; the same procedure for each arm: train seed 0 at each lr, keep the lowest
    # validation MAE (ties: the smaller lr). One value = no grid.
    # One half-decade grid for every arm. (A first one-seed try put SFT's best at 3e-5, the low edge of
    # 3e-5..3e-4, and both GRPO arms' at 3e-5 inside 1e-5..1e-4: this grid brackets all three.)
    sft_lrs: tuple[float, ...] = (1e-5, 3e-5, 1e-4)
    grpo_lrs: tuple[float, ...] = (1e-5, 3e-5, 1e-4)

    # ---- evaluation and claims
    eval_batch_size: int = 50
    max_new_tokens: int = 10
    bucket_edges: tuple[int, ...] = (10, 20, 30, 40)
    large_count_min: int = 31  # C3's "larger counts": OOD images with at least this many objects
    practical_margin: float = 0.05  # C1/C2: |diff| inside ±5 % of SFT's MAE counts as "no difference"
    equivalence_margin: float = 0.10  # C3 "about equal": within ±10 % of SFT's OOD MAE
    n_boot: int = 2000
    ci_level: float = 0.95

    # ---- bookkeeping
    name: str = "default"
    notes: tuple[str, ...] = field(default_factory=tuple)

    # ----------------------------------------------------------------------------------------- derived
    def lrs(self, arm: str) -> tuple[float, ...]:
        """The lr grid of ``arm``."""
        return self.sft_lrs if ARMS[arm][0] == "sft" else self.grpo_lrs

    def eval_sets(self) -> tuple[str, ...]:
        """The evaluation sets: ``val`` (lr grid), ``test`` (in-domain), ``ood`` and, if set, ``ood_near``."""
        return ("val", "test", "ood") + (("ood_near",) if self.near_ood_style else ())

    def set_size(self, name: str) -> int:
        """Number of images of an evaluation set."""
        return {"val": self.n_val, "test": self.n_test, "ood": self.n_ood, "ood_near": self.n_ood}[name]

    def train_data_seed(self, seed: int) -> int:
        """Data seed of the training images that every arm sees at training seed ``seed``."""
        return self.data_seed + 1 + seed

    def steps(self, arm: str) -> int:
        """Optimizer steps of ``arm``: one pass over ``n_train`` images."""
        per_step = self.sft_batch_size if ARMS[arm][0] == "sft" else self.grpo_prompts_per_step
        return max(1, self.n_train // per_step)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field when the plan cannot run."""
        problems = []
        for name in ("n_train", "n_val", "n_test", "n_ood", "num_generations", "n_boot"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("train_counts", "test_counts", "ood_counts"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                problems.append(f"{name} must be 0 <= min <= max, got {(lo, hi)}")
        if self.ood_counts[1] > self.train_counts[1]:
            problems.append(f"ood_counts {self.ood_counts} reach past train_counts {self.train_counts}")
        for name in ("ood_style", "near_ood_style"):
            if getattr(self, name) in self.styles:
                problems.append(f"{name} {getattr(self, name)!r} is also an in-domain style")
        if not self.seeds:
            problems.append("seeds is empty")
        if not self.sft_lrs or not self.grpo_lrs:
            problems.append("sft_lrs and grpo_lrs need at least one learning rate each")
        if self.grpo_prompts_per_step * self.num_generations < 2 or self.num_generations < 2:
            problems.append("GRPO needs num_generations >= 2")
        if problems:
            raise ValueError(f"invalid demo plan {self.name!r}: " + "; ".join(problems))

    # ----------------------------------------------------------------------------------------- (de)serialise
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> DemoPlan:
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise ValueError(f"unknown demo plan fields {unknown}; known: {sorted(known)}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
        return cls(**values)

    def with_overrides(self, overrides: dict[str, str | Any]) -> DemoPlan:
        """A copy with fields replaced; string values (from ``--set key=value``) are parsed to the field type.

        Tuples are written comma-separated (``seeds=0,1``, ``sft_lrs=1e-4``).

        >>> quick_plan().with_overrides({"n_train": "8", "seeds": "0,1", "grpo_lrs": "1e-5"}).n_train
        8
        """
        known = {f.name: f for f in dataclasses.fields(self)}
        values = {}
        for key, raw in overrides.items():
            if key not in known:
                raise ValueError(f"unknown demo plan field {key!r}; known: {', '.join(sorted(known))}")
            current = getattr(self, key)
            values[key] = _parse_like(current, raw, key) if isinstance(raw, str) else raw
        return dataclasses.replace(self, **values)


def _parse_like(current: Any, raw: str, key: str) -> Any:
    """Parse ``raw`` to the type of ``current`` (bool, int, float, str, or a tuple of one of those)."""
    try:
        if isinstance(current, tuple):
            kind = type(current[0]) if current else str
            return tuple(_parse_like(kind(), part.strip(), key) for part in raw.split(",") if part.strip())
        if isinstance(current, bool):
            if raw.lower() not in ("true", "false", "1", "0"):
                raise ValueError(raw)
            return raw.lower() in ("true", "1")
        return type(current)(raw)
    except ValueError as err:
        raise ValueError(f"--set {key}={raw}: expected {type(current).__name__} like {current!r}") from err


def default_plan() -> DemoPlan:
    """The full experiment: 3 seeds, an lr grid per arm, 2,000 training images per seed."""
    return DemoPlan()


def quick_plan() -> DemoPlan:
    """A few-minute run of every stage: one seed, no lr grid (each arm at its grid's middle lr), small sets."""
    base = DemoPlan()
    return dataclasses.replace(
        base,
        name="quick",
        seeds=(0,),
        n_train=400,
        n_val=50,
        n_test=250,
        n_ood=150,
        sft_lrs=(base.sft_lrs[len(base.sft_lrs) // 2],),  # the middle of each grid, no search
        grpo_lrs=(base.grpo_lrs[len(base.grpo_lrs) // 2],),
        n_boot=1000,
        notes=("quick: one seed and no lr grid; the verdicts are a smoke test, not the experiment",),
    )
