"""Evaluation run folders written for the compare tests: predictions.jsonl and metrics.json from rows."""

from __future__ import annotations

import json

from crowdvlm.evaluate.predictions import Prediction, PredictionWriter
from crowdvlm.evaluate.scoring import compute_metrics


def write_run(path, rows, *, with_metrics=True):
    preds = [Prediction(i, d, f"{i}.png", t, "", p, p is not None, e) for i, d, t, p, e in rows]
    path.mkdir(parents=True)
    with PredictionWriter(path / "predictions.jsonl") as w:
        w.write_batch(preds)
    if with_metrics:
        (path / "metrics.json").write_text(json.dumps(compute_metrics(preds)))
    return path
