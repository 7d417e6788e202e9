"""From an experiment's prediction files to aligned arrays and summary tables.

Every model was evaluated on the same images, so each set becomes one row order (sorted image ids) and each
arm an array of predictions of shape ``(seeds, images)``; an untrained arm has one "seed".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crowdvlm.evaluate.results import metrics_over_seeds, prediction_rows
from crowdvlm.metrics import absolute_errors, bucket_label, bucket_labels, parsed_mask

__all__ = ["ArmPredictions", "SetResults", "load_set", "summarise"]


@dataclass
class ArmPredictions:
    """Predictions of one arm on one set. ``preds[s, i]`` is -1 where the answer could not be parsed."""

    seeds: tuple[int, ...]
    preds: np.ndarray  # (S, N) int

    @property
    def parsed(self) -> np.ndarray:
        return parsed_mask(self.preds)

    def errors(self, truths: np.ndarray) -> np.ndarray:
        """Absolute errors ``(S, N)`` (:func:`crowdvlm.metrics.absolute_errors`)."""
        return absolute_errors(self.preds, truths)


@dataclass
class SetResults:
    """One evaluation set: ids, truths, dataset names and every arm's predictions, in one row order."""

    name: str
    ids: list[str]
    truths: np.ndarray  # (N,)
    datasets: np.ndarray  # (N,) str
    arms: dict[str, ArmPredictions] = field(default_factory=dict)


def _read(path: Path) -> dict[str, Any]:
    from crowdvlm.evaluate.predictions import latest_by_id, read_predictions

    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: its evaluation stage has not run")
    return latest_by_id(read_predictions(path))


def load_set(name: str, files: dict[str, dict[int, Path]]) -> SetResults:
    """Align the ``predictions.jsonl`` of every arm and seed on one set.

    Args:
        name: the set ("test", "ood", "val").
        files: ``{arm: {seed: predictions.jsonl}}``.

    Raises:
        ValueError: a file misses images that another one has, or an image could not be evaluated.
    """
    arms: dict[str, ArmPredictions] = {}
    reference: dict[str, Any] | None = None
    ref_path = None
    for arm, by_seed in files.items():
        rows = []
        for _seed, path in sorted(by_seed.items()):
            preds = _read(path)
            errored = [p.id for p in preds.values() if p.error is not None or p.truth is None]
            if errored:
                raise ValueError(f"{path}: {len(errored)} images were not scored (first: {errored[0]})")
            if reference is None:
                reference, ref_path = preds, path
                ids = sorted(preds)
            if set(preds) != set(reference):
                missing = sorted(set(reference) ^ set(preds))[:3]
                raise ValueError(f"{path} and {ref_path} hold different images (e.g. {missing})")
            rows.append(preds)
        arms[arm] = ArmPredictions(tuple(sorted(by_seed)), prediction_rows(rows, ids))
    if reference is None:
        raise ValueError(f"no predictions given for set {name!r}")
    truths = np.asarray([reference[i].truth for i in ids], dtype=np.int64)
    datasets = np.asarray([reference[i].dataset for i in ids])
    return SetResults(name, ids, truths, datasets, arms)


def summarise(results: SetResults, edges: tuple[int, ...]) -> dict[str, Any]:
    """Per-arm metrics on the whole set, per dataset and per count bucket (mean and sd over seeds,
    :func:`crowdvlm.evaluate.results.metrics_over_seeds`)."""
    buckets = np.asarray([bucket_label(int(t), edges) for t in results.truths])
    datasets = list(dict.fromkeys(sorted(results.datasets.tolist())))
    out: dict[str, Any] = {"n": len(results.ids), "datasets": datasets, "buckets": [], "arms": {}}
    out["buckets"] = [b for b in bucket_labels(edges) if (buckets == b).any()]
    for name, arm in results.arms.items():
        out["arms"][name] = {
            "seeds": list(arm.seeds),
            "overall": metrics_over_seeds(arm.preds, results.truths),
            "per_dataset": {
                d: metrics_over_seeds(arm.preds, results.truths, results.datasets == d) for d in datasets
            },
            "per_bucket": {
                b: metrics_over_seeds(arm.preds, results.truths, buckets == b) for b in out["buckets"]
            },
        }
    return out
