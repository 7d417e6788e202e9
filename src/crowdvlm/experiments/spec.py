"""The experiment file: what an experiment declares, read and checked before anything runs.

An experiment file is YAML (see docs/experiments.md and ``crowdvlm/recipes/experiments/``)::

    extends: demo.yaml              # optional: a file this one changes (mappings merge, lists replace)
    name: demo
    base: package:demo/base         # the model every arm starts from ("package:" = inside crowdvlm)
    data:   {question: ..., image_size: 112, sets: {train: {...}, val: {...}, test: {...}}}
    train_set: train                # synthesised once per training seed (seed + k)
    validation_set: val             # the lr grid is decided here, before any test set is looked at
    test_sets: [test, ood]
    seeds: [0, 1, 2]
    eval:   {template: train, output: answer-only, max_new_tokens: 10, batch_size: 50}
    arms:   {base: {model: base}, sft: {train: sft, recipe: ../demo/sft.yaml, lr_grid: [1e-5, 3e-5]}}
    comparisons: [{id: C1, a: grpo_binary, b: sft, set: test, expect: higher, margin: 0.05}]
    claims: {C3: {statement: ..., parts: [C3a, C3b]}}
    report: {bucket_edges: [10, 20, 30, 40], n_boot: 2000, ci_level: 0.95}

Training settings live only in the recipes the arms name; an arm's ``overrides`` change recipe keys (its
rewards, its epochs) and the runner adds only what makes a run one cell of the experiment: the base model,
the training set, the output folder, the learning rate of the grid and the seed. Every error is one line
naming the file and the key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crowdvlm.data.synth_limits import MAX_COUNT, MAX_IMAGES, MAX_SIDE
from crowdvlm.experiments.yamlfile import Keys, read_yaml, resolve_path

__all__ = ["ArmSpec", "ClaimSpec", "ComparisonSpec", "Experiment", "SetSpec", "load_experiment"]

EXPECTATIONS = ("lower", "higher", "equal")
SELECTION_METRICS = ("mae", "rmse", "mae_parsed")
_TOP_KEYS = {
    "extends",
    "name",
    "title",
    "description",
    "notes",
    "caveats",
    "base",
    "data",
    "train_set",
    "validation_set",
    "test_sets",
    "seeds",
    "eval",
    "arms",
    "selection",
    "comparisons",
    "claims",
    "report",
}


@dataclass(frozen=True)
class SetSpec:
    """One image set: synthesised (``styles``, ``counts``, ``n``, ``seed``) or read from ``manifests``."""

    name: str
    styles: tuple[str, ...] = ()
    counts: tuple[int, int] = (0, 0)
    n: int = 0
    seed: int = 0
    balanced: bool = False  # n split evenly over the styles, one manifest (dataset) per style
    manifests: tuple[Path, ...] = ()

    @property
    def synthetic(self) -> bool:
        return not self.manifests


@dataclass(frozen=True)
class ArmSpec:
    """One arm: trained from the base by a recipe (``train`` + ``recipe``), or a model evaluated as is."""

    name: str
    train: str | None = None  # "sft" | "grpo"; None = untrained
    recipe: Path | None = None
    recipe_as_written: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)
    lr_grid: tuple[float, ...] = ()
    model: Path | None = None  # untrained arms only
    label: str = ""
    eval: dict[str, Any] = field(default_factory=dict)  # the arm's changes to the experiment's eval settings

    @property
    def trained(self) -> bool:
        return self.train is not None


@dataclass(frozen=True)
class ComparisonSpec:
    """A claim to decide: arm ``a`` against arm ``b`` on ``set`` (optionally a count range)."""

    id: str
    statement: str
    a: str
    b: str
    set: str
    expect: str  # lower | higher | equal (MAE of a relative to b)
    margin: float  # practical margin, a fraction of b's MAE
    counts: tuple[int, int | None] | None = None


@dataclass(frozen=True)
class ClaimSpec:
    """A verdict combined from comparisons: reproduces iff every part does (see ``combine_verdicts``)."""

    id: str
    statement: str
    parts: tuple[str, ...]


@dataclass(frozen=True)
class Experiment:
    """A validated experiment file."""

    path: Path
    name: str
    title: str
    description: str
    notes: tuple[str, ...]
    caveats: tuple[str, ...]
    base: Path
    base_as_written: str
    question: str | None
    image_size: int
    sets: dict[str, SetSpec]
    train_set: str
    validation_set: str | None
    test_sets: tuple[str, ...]
    seeds: tuple[int, ...]
    eval: dict[str, Any]
    arms: dict[str, ArmSpec]
    selection_metric: str
    comparisons: tuple[ComparisonSpec, ...]
    claims: tuple[ClaimSpec, ...]
    bucket_edges: tuple[int, ...]
    n_boot: int
    ci_level: float
    resolved: dict[str, Any]  # the merged file, as written (what a resumed folder must match)

    def eval_of(self, arm: str) -> dict[str, Any]:
        """The eval settings of ``arm``: the experiment's ``eval``, changed by the arm's own ``eval`` keys."""
        return {**self.eval, **self.arms[arm].eval}

    def eval_sets(self) -> tuple[str, ...]:
        """Every set a model is evaluated on: the validation set (if an lr grid needs it), then the test sets."""
        grid = any(len(a.lr_grid) > 1 for a in self.arms.values())
        return ((self.validation_set,) if grid and self.validation_set else ()) + self.test_sets


def _is_int(value: Any) -> bool:
    """An integer, and not a boolean (``True`` is an ``int`` in Python)."""
    return isinstance(value, int) and not isinstance(value, bool)


#: One path component an experiment writes under (a set, an arm, the experiment's name).
_SAFE_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def _check_name(keys: Keys, key: str, name: Any) -> str:
    """``name`` as one safe folder name: letters, digits, ``_``, ``-``, ``.``; not ``.`` or ``..``."""
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name) or set(name) == {"."}:
        keys.fail(
            key,
            f"{name!r} is not a usable name: it becomes a folder, so use letters, digits, '_', '-' and '.' "
            "(not '.' or '..' alone)",
        )
    return name


def _int_pair(keys: Keys, key: str, *, open_end: bool = False) -> tuple[int, int | None]:
    value = keys.get(key, list, hint="[min, max]")
    ok = len(value) == 2 and _is_int(value[0]) and value[0] >= 0
    ok = ok and (value[1] is None and open_end or _is_int(value[1]) and value[1] >= value[0])
    if not ok:
        keys.fail(
            key,
            f"expected [min, max] with 0 <= min <= max{' (max may be null)' if open_end else ''}, got {value!r}",
        )
    return value[0], value[1]


def _set(path: Path, name: str, raw: Any) -> SetSpec:
    keys = Keys(path, raw, f"data.sets.{name}", {"styles", "counts", "n", "seed", "balanced", "manifests"})
    _check_name(Keys(path, {}, "data.sets"), name, name)
    if "manifests" in raw:
        files = keys.get("manifests", list, hint="a list of manifest paths")
        if not files or not all(isinstance(f, str) for f in files):
            keys.fail("manifests", f"expected a non-empty list of manifest paths, got {files!r}")
        for f in files:
            if not resolve_path(path, f).is_file():
                where = "not found" if not resolve_path(path, f).exists() else "is not a file"
                keys.fail("manifests", f"{f} {where} (relative to {getattr(f, 'origin', path.parent)})")
        return SetSpec(name, manifests=tuple(resolve_path(path, f) for f in files))
    styles = keys.get("styles", list, hint="a list of synth styles (crowdvlm.data.synth_styles.STYLES)")
    from crowdvlm.data.synth_styles import STYLES

    bad = [s for s in styles if s not in STYLES]
    if not styles or bad:
        keys.fail("styles", f"unknown style(s) {bad or styles}; valid: {', '.join(sorted(STYLES))}")
    counts = _int_pair(keys, "counts")
    if counts[1] > MAX_COUNT:
        keys.fail("counts", f"at most {MAX_COUNT} objects per image, got {list(counts)}")
    n = keys.get(
        "n",
        int,
        check=lambda v: 1 <= v <= MAX_IMAGES,
        hint=f"a positive number of images, at most {MAX_IMAGES}",
    )
    seed = keys.get("seed", int, check=lambda v: v >= 0, hint="an integer seed >= 0")
    return SetSpec(name, tuple(styles), counts, n, seed, keys.get("balanced", bool, False))


def _arm(path: Path, name: str, raw: Any) -> ArmSpec:
    _check_name(Keys(path, {}, "arms"), name, name)
    keys = Keys(
        path, raw, f"arms.{name}", {"train", "recipe", "overrides", "lr_grid", "model", "label", "eval"}
    )
    label = keys.get("label", str, name)
    ev = _eval_settings(keys.sub("eval", set(EVAL_DEFAULTS), {}), defaults={})
    if "model" in raw:
        if "train" in raw or "recipe" in raw:
            keys.fail(
                "model", "an arm is either trained (train + recipe) or a model evaluated as is, not both"
            )
        model = keys.get("model", str)
        return ArmSpec(
            name, model=None if model == "base" else resolve_path(path, model), label=label, eval=ev
        )
    train = keys.get("train", str, check=lambda v: v in ("sft", "grpo"), hint="sft or grpo")
    recipe = keys.get("recipe", str, hint="a recipe YAML under recipes/")
    if not resolve_path(path, recipe).is_file():
        keys.fail("recipe", f"{recipe} not found (relative to {getattr(recipe, 'origin', path.parent)})")
    lrs = keys.get("lr_grid", list, hint="a list of learning rates")
    if not lrs or not all(isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in lrs):
        keys.fail("lr_grid", f"expected a non-empty list of positive learning rates, got {lrs!r}")
    overrides = keys.get("overrides", dict, {})
    reserved = sorted(set(overrides) & set(_RUN_KEYS))
    if reserved:
        keys.fail(f"overrides.{reserved[0]}", "set by the runner for every run (see docs/experiments.md)")
    return ArmSpec(
        name,
        train,
        resolve_path(path, recipe),
        recipe,
        dict(overrides),
        tuple(map(float, sorted(lrs))),
        label=label,
        eval=ev,
    )


#: ``eval:`` keys (of the experiment, or of one arm) and their defaults: crowdvlm eval's settings.
EVAL_DEFAULTS: dict[str, Any] = {
    "template": "eval",
    "output": "think",
    "max_new_tokens": 256,
    "batch_size": 8,
}


def _eval_settings(keys: Keys, defaults: dict[str, Any]) -> dict[str, Any]:
    """The ``eval`` keys given (and the ``defaults`` of the others), checked; ``points`` adds localisation."""
    from crowdvlm.prompts import OUTPUTS

    out = {}
    for key in EVAL_DEFAULTS:
        if key not in keys.raw and key not in defaults:
            continue
        if key == "output":
            check, hint = (lambda v: v in OUTPUTS), " or ".join(OUTPUTS)
        elif key == "template":
            check, hint = None, ""
        else:
            check, hint = (lambda v: v >= 1), "a positive integer"
        out[key] = keys.get(key, type(EVAL_DEFAULTS[key]), defaults.get(key, ...), check=check, hint=hint)
    return out


#: The keys the runner sets on every training run (an arm may not override them).
_RUN_KEYS = ("model_name_or_path", "dataset", "output_dir", "learning_rate", "seed", "data_seed")


def _comparison(path: Path, k: int, raw: Any, exp: dict[str, Any]) -> ComparisonSpec:
    keys = Keys(
        path, raw, f"comparisons[{k}]", {"id", "statement", "a", "b", "set", "expect", "margin", "counts"}
    )
    arms, sets = exp["arms"], exp["test_sets"]
    a = keys.get("a", str, check=lambda v: v in arms, hint=f"an arm ({', '.join(arms)})")
    b = keys.get("b", str, check=lambda v: v in arms and v != a, hint=f"another arm ({', '.join(arms)})")
    return ComparisonSpec(
        id=keys.get("id", str),
        statement=keys.get("statement", str, f"{a} vs {b}"),
        a=a,
        b=b,
        set=keys.get("set", str, check=lambda v: v in sets, hint=f"a test set ({', '.join(sets)})"),
        expect=keys.get("expect", str, check=lambda v: v in EXPECTATIONS, hint=" or ".join(EXPECTATIONS)),
        margin=keys.get("margin", float, check=lambda v: v >= 0, hint="a fraction of b's MAE, >= 0"),
        counts=_int_pair(keys, "counts", open_end=True) if "counts" in raw else None,
    )


def _bucket_edges(report: Keys) -> tuple[int, ...]:
    edges = report.get("bucket_edges", list, [10, 100, 1000])
    if not edges or not all(_is_int(e) and e >= 0 for e in edges) or list(edges) != sorted(set(edges)):
        report.fail(
            "bucket_edges", f"expected increasing integer counts >= 0, e.g. [10, 20, 30], got {edges!r}"
        )
    return tuple(edges)


def _check_folders(top: Keys, sets: dict[str, SetSpec], train_set: str) -> None:
    """No two sets may write one folder under ``data/`` (the training set's ``<name>-s<seed>``, a balanced
    set's ``<name>-<style>``)."""
    seeds = top.raw.get("seeds") or []
    owner: dict[str, str] = {}
    for name, spec in sets.items():
        folders = [name]
        if spec.synthetic and name == train_set:
            folders += [f"{name}-s{s}" for s in seeds]
        if spec.synthetic and spec.balanced:
            folders += [f"{f}-{style}" for f in list(folders) for style in spec.styles]
        for folder in folders:
            if owner.setdefault(folder, name) != name:
                top.fail(
                    "data.sets",
                    f"sets {owner[folder]!r} and {name!r} would both write data/{folder}: rename one",
                )


def load_experiment(path: str | Path) -> Experiment:
    """Read, merge (``extends``) and validate an experiment file.

    Raises:
        UsageError: one line naming the file and the key, before anything runs.
    """
    path = Path(path).resolve()
    raw = read_yaml(path)
    top = Keys(path, raw, "", _TOP_KEYS)
    data = top.sub("data", {"question", "image_size", "sets"})
    sets = {name: _set(path, name, spec) for name, spec in data.sub("sets").raw.items()}
    if not sets:
        data.fail("sets", "declare at least one image set")

    def set_name(key: str, default: Any = ...) -> Any:
        return top.get(
            key, str, default, check=lambda v: v in sets, hint=f"a set of data.sets ({', '.join(sets)})"
        )

    train_set, validation_set = set_name("train_set"), set_name("validation_set", None)
    test_sets = top.get("test_sets", list, hint="a list of sets")
    for s in test_sets:
        if s not in sets:
            top.fail("test_sets", f"{s!r} is not a set of data.sets ({', '.join(sets)})")
    if train_set in test_sets or validation_set in test_sets:
        top.fail("test_sets", "a test set may not be the training or the validation set")
    seeds = top.get("seeds", list, hint="a list of integer seeds")
    if not seeds or not all(_is_int(s) and s >= 0 for s in seeds) or len(set(seeds)) != len(seeds):
        top.fail("seeds", f"expected distinct integer seeds >= 0, got {seeds!r}")
    _check_folders(top, sets, train_set)
    arms = {name: _arm(path, name, spec) for name, spec in top.sub("arms").raw.items()}
    if not any(a.trained for a in arms.values()):
        top.fail("arms", "declare at least one trained arm (train + recipe)")
    if any(len(a.lr_grid) > 1 for a in arms.values()) and validation_set is None:
        top.fail("validation_set", "an arm has an lr grid: name the set that selects its learning rate")
    ev = top.sub("eval", set(EVAL_DEFAULTS), {})
    selection = top.sub("selection", {"metric"}, {})
    report = top.sub("report", {"bucket_edges", "n_boot", "ci_level"}, {})
    ctx = {"arms": arms, "test_sets": test_sets}
    comparisons = tuple(_comparison(path, k, c, ctx) for k, c in enumerate(top.get("comparisons", list, [])))
    ids = [c.id for c in comparisons]
    if len(set(ids)) != len(ids):
        top.fail("comparisons", f"ids must be unique, got {ids}")
    claims = []
    for cid, spec in top.sub("claims", None, {}).raw.items():
        keys = Keys(path, spec, f"claims.{cid}", {"statement", "parts"})
        parts = keys.get("parts", list, hint="a list of comparison ids")
        if not parts or any(p not in ids for p in parts):
            keys.fail("parts", f"expected comparison ids ({', '.join(ids)}), got {parts!r}")
        claims.append(ClaimSpec(cid, keys.get("statement", str, cid), tuple(parts)))
    base = top.get("base", str, hint="the model every arm starts from")
    if not (resolve_path(path, base) / "config.json").is_file():
        top.fail("base", f"{base} holds no model (config.json)")
    return Experiment(
        path=path,
        name=_check_name(top, "name", top.get("name", str)),
        title=top.get("title", str, top.get("name", str)),
        description=top.get("description", str, ""),
        notes=tuple(top.get("notes", list, [])),
        caveats=tuple(top.get("caveats", list, [])),
        base=resolve_path(path, base),
        base_as_written=base,
        question=data.get("question", str, None),
        image_size=data.get(
            "image_size", int, 112, check=lambda v: 28 <= v <= MAX_SIDE, hint=f"pixels, 28 to {MAX_SIDE}"
        ),
        sets=sets,
        train_set=train_set,
        validation_set=validation_set,
        test_sets=tuple(test_sets),
        seeds=tuple(seeds),
        eval=_eval_settings(ev, defaults=EVAL_DEFAULTS),
        arms=arms,
        selection_metric=selection.get(
            "metric", str, "mae", check=lambda v: v in SELECTION_METRICS, hint=" or ".join(SELECTION_METRICS)
        ),
        comparisons=comparisons,
        claims=tuple(claims),
        bucket_edges=_bucket_edges(report),
        n_boot=report.get("n_boot", int, 2000, check=lambda v: v >= 10, hint="an integer >= 10"),
        ci_level=report.get("ci_level", float, 0.95, check=lambda v: 0 < v < 1, hint="a level in (0, 1)"),
        resolved=raw,
    )
