"""Reading an experiment file: YAML with ``extends``, paths anchored to the file that wrote them, typed keys.

:mod:`crowdvlm.experiments.spec` says what the keys mean; this module knows only how to read them so that
every failure is one line naming the file and the dotted key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crowdvlm.errors import UsageError

__all__ = [
    "PACKAGE_DIR",
    "SHIPPED_EXPERIMENTS",
    "Keys",
    "experiment_file",
    "load_mapping",
    "read_yaml",
    "resolve_path",
]

PACKAGE_DIR = Path(__file__).resolve().parent.parent
#: The experiment files shipped inside the package (the demo's, the reward study, pointing); their arms'
#: recipes are beside them in ``crowdvlm/recipes/``, so they run from an installed wheel too.
SHIPPED_EXPERIMENTS = PACKAGE_DIR / "recipes" / "experiments"


def experiment_file(value: str | Path) -> Path:
    """The experiment file a command names: a path, ``package:X`` (inside crowdvlm), or the bare name of a
    shipped experiment (``demo``, ``reward_study``: ``crowdvlm/recipes/experiments/<name>.yaml``)."""
    text = str(value)
    if text.startswith("package:"):
        return PACKAGE_DIR / text.removeprefix("package:")
    path = Path(text)
    shipped = SHIPPED_EXPERIMENTS / f"{text}.yaml"
    if not path.exists() and path.name == text and not path.suffix and shipped.is_file():
        return shipped
    return path


def load_mapping(path: Path, what: str) -> dict[str, Any]:
    """A YAML file that must hold a mapping (``{}`` when empty); one UsageError naming the file otherwise."""
    import yaml

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise UsageError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from None
    if not isinstance(raw, dict):
        raise UsageError(f"{path}: {what} must be a YAML mapping of key: value")
    return raw


def read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The file's mapping with its ``extends`` chain merged in (the child's keys win)."""
    if path in seen:
        raise UsageError(f"{path}: extends: the chain {' -> '.join(map(str, seen))} loops back to it")
    if not path.is_file():
        raise UsageError(f"{seen[-1] if seen else path}: experiment file {path} not found")
    raw = load_mapping(path, "an experiment file")
    _anchor(raw, path.parent)
    parent = raw.pop("extends", None)
    if parent is None:
        return raw
    if not isinstance(parent, str):
        raise UsageError(f"{path}: extends: expected a file name, got {parent!r}")
    target = experiment_file(parent) if parent.startswith("package:") else (path.parent / parent).resolve()
    return _merge(read_yaml(target, (*seen, path)), raw)


class _Anchored(str):
    """A path as written in an experiment file, remembering the folder it is relative to (for ``extends``)."""

    origin: Path


def _anchored(value: Any, folder: Path) -> Any:
    if not isinstance(value, str):
        return value
    out = _Anchored(value)
    out.origin = folder
    return out


def _anchor(raw: dict[str, Any], folder: Path) -> None:
    """Tag the path values of one file (base, recipes, models, manifests) with the file's folder."""
    if "base" in raw:
        raw["base"] = _anchored(raw["base"], folder)
    for arm in (raw.get("arms") or {}).values():
        for key in ("recipe", "model"):
            if isinstance(arm, dict) and key in arm:
                arm[key] = _anchored(arm[key], folder)
    sets = (raw.get("data") or {}).get("sets") if isinstance(raw.get("data"), dict) else None
    for spec in (sets or {}).values():
        if isinstance(spec, dict) and isinstance(spec.get("manifests"), list):
            spec["manifests"] = [_anchored(m, folder) for m in spec["manifests"]]


def _merge(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """Mappings merge key by key; anything else (lists, numbers) is replaced; ``null`` deletes the key."""
    out = dict(base)
    for key, value in child.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


class Keys:
    """Typed access to one mapping of the file; every failure names the file and the dotted key."""

    def __init__(self, path: Path, raw: Any, where: str, allowed: set[str] | None = None):
        self.path, self.where = path, where
        if not isinstance(raw, dict):
            self.fail("", f"expected a mapping, got {raw!r}")
        self.raw = raw
        if allowed is not None:
            unknown = sorted(set(raw) - allowed)
            if unknown:
                self.fail(unknown[0], f"unknown key; valid keys: {', '.join(sorted(allowed))}")

    def fail(self, key: str, message: str):
        dotted = ".".join(k for k in (self.where, key) if k)
        raise UsageError(f"{self.path}: {dotted}: {message}")

    def get(
        self, key: str, kind: type | tuple[type, ...], default: Any = ..., *, check=None, hint: str = ""
    ) -> Any:
        if key not in self.raw:
            if default is ...:
                self.fail(key, f"missing{f' ({hint})' if hint else ''}")
            return default
        value = self.raw[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            names = " or ".join(k.__name__ for k in kinds)
            self.fail(key, f"expected {hint or names}, got {value!r}")
        if check is not None and not check(value):
            self.fail(key, f"expected {hint}, got {value!r}")
        return value

    def sub(self, key: str, allowed: set[str] | None = None, default: Any = ...) -> Keys:
        dotted = ".".join(k for k in (self.where, key) if k)
        return Keys(self.path, self.get(key, dict, default), dotted, allowed)


def resolve_path(path: Path, value: str) -> Path:
    """``package:X`` is X inside the crowdvlm package; any other relative path is relative to the file that
    wrote it (the experiment file, or the file it ``extends``)."""
    if value.startswith("package:"):
        return PACKAGE_DIR / value.removeprefix("package:")
    p = Path(value)
    return p if p.is_absolute() else (getattr(value, "origin", path.parent) / p).resolve()
