"""Localisation of point answers in an eval run: ``localisation.json``, overlays and a report section.

After :func:`crowdvlm.evaluate.run.evaluate` has written ``predictions.jsonl`` for a run with the ``points``
output, :func:`write_localisation` reads each answer's points with :func:`crowdvlm.parsing.parse_points` in
the frame the model saw, maps them back to original image pixels and matches them to the manifest's points
(:mod:`crowdvlm.pointing.metrics`). It writes

* ``localisation.json`` (also merged into ``metrics.json`` under ``"localisation"``): precision / recall / F1
  at each radius and the count read from the points, overall, per dataset and per count bucket;
* ``overlays/*.png``: a few images with predicted (red) and true (green) points;
* a "Localisation" section appended to ``report.md``.

Images without points in the manifest, without ground truth or never answered are counted, not scored.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from crowdvlm.evaluate.predictions import PREDICTIONS_FILE, Prediction, latest_by_id, read_predictions
from crowdvlm.evaluate.report import REPORT_FILE, format_value
from crowdvlm.evaluate.run import _write_json
from crowdvlm.parsing import parse_points
from crowdvlm.pointing.frame import Frame
from crowdvlm.pointing.metrics import DEFAULT_RADII, ImagePoints, image_points, localisation_summary
from crowdvlm.resize import ResizeRule

__all__ = ["LOCALISATION_FILE", "OVERLAY_DIR", "frame_rule_for", "write_localisation"]

logger = logging.getLogger(__name__)

LOCALISATION_FILE = "localisation.json"
OVERLAY_DIR = "overlays"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def frame_rule_for(
    convention: str, backend: Any, model: str, min_pixels=None, max_pixels=None
) -> ResizeRule | None:
    """The resize rule of the ``resized`` frame: the backend's processor, else the model folder's processor.

    Raises:
        ValueError: ``resized`` and no Qwen-VL processor can be found (e.g. an API model): the message says
            to choose ``--point-frame relative-1000`` or ``original``.
    """
    if convention != "resized":
        return None
    processor = getattr(backend, "processor", None)
    if processor is None:
        try:
            from transformers import AutoProcessor

            from crowdvlm.modeling import set_image_pixels

            processor = AutoProcessor.from_pretrained(model)
            set_image_pixels(processor, min_pixels, max_pixels)
        except (OSError, ValueError) as err:
            raise ValueError(
                f"--point-frame resized needs the model's Qwen-VL processor, which {model!r} does not give ({err}); "
                "pass --point-frame relative-1000 (Qwen3-VL style) or original"
            ) from None
    return ResizeRule.from_processor(processor)


def _records_by_image(manifests: Sequence[str | Path]) -> dict[tuple[str, str], dict]:
    from crowdvlm.data.manifest import read_manifest

    out = {}
    for manifest in manifests:
        for rec in read_manifest(manifest, check_images=False):
            out[(rec["dataset"], rec["image"])] = rec
    return out


def _score(
    p: Prediction, rec: dict, convention: str, rule: ResizeRule | None, radii
) -> tuple[ImagePoints, list]:
    from crowdvlm.pointing.targets import image_size

    width, height = image_size(rec["image"], rec.get("width"), rec.get("height"))
    frame = Frame.make(convention, width, height, rule)
    answer = parse_points(p.text, (frame.width, frame.height))
    pred = frame.from_frame(answer.points).tolist()
    row = image_points(p.dataset, pred, rec["points"], radii, answer.capped, answer.outside)
    return row, pred


def write_localisation(
    out_dir: str | Path,
    manifests: Sequence[str | Path],
    convention: str,
    rule: ResizeRule | None,
    *,
    radii: Sequence[float] = DEFAULT_RADII,
    overlays: int = 4,
) -> dict[str, Any]:
    """Score the point answers of the run in ``out_dir``; write the JSON, overlays and report section.

    Args:
        out_dir: an eval run directory (``predictions.jsonl`` written with the ``points`` output).
        manifests: the manifests evaluated (their ``points`` are the truth).
        convention: the point frame (see :mod:`crowdvlm.pointing.frame`).
        rule: the processor's resize rule (``resized`` frame only).
        radii: matching radii, in original image pixels.
        overlays: how many images to draw (the first scored ones, in run order).

    Returns:
        The localisation summary (``localisation.json``), plus ``unscored`` (images left out).
    """
    out_dir = Path(out_dir)
    records = _records_by_image(manifests)
    rows, drawn, unscored = [], [], 0
    for p in latest_by_id(read_predictions(out_dir / PREDICTIONS_FILE)).values():
        rec = records.get((p.dataset, p.image))
        if p.error is not None or p.truth is None or rec is None or rec.get("points") is None:
            unscored += 1
            continue
        row, pred = _score(p, rec, convention, rule, radii)
        rows.append(row)
        if len(drawn) < overlays:
            drawn.append(_overlay(out_dir, p, rec, pred, radii))
    summary = {**localisation_summary(rows, radii), "frame": convention, "unscored": unscored}
    _write_json(out_dir / LOCALISATION_FILE, summary)
    metrics_path = out_dir / "metrics.json"
    if metrics_path.exists():
        _write_json(
            metrics_path, {**json.loads(metrics_path.read_text(encoding="utf-8")), "localisation": summary}
        )
    report = out_dir / REPORT_FILE
    if report.exists():
        with report.open("a", encoding="utf-8") as f:
            f.write(localisation_section(summary, drawn))
    logger.info(
        "localisation: %d images scored, %d not (no points, no truth or no answer)", len(rows), unscored
    )
    return summary


def _overlay(out_dir: Path, p: Prediction, rec: dict, pred: list, radii) -> tuple[str, str]:
    from crowdvlm.pointing.overlay import draw_points

    name = f"{OVERLAY_DIR}/{_UNSAFE.sub('_', p.id)[-80:]}.png"
    draw_points(rec["image"], out_dir / name, pred, rec["points"], radius=radii[len(radii) // 2])
    return p.id, name


def localisation_section(summary: dict, drawn: Sequence[tuple[str, str]]) -> str:
    """The report's markdown section: F1 / precision / recall per radius and the pointed count, per group."""
    radii = summary["radii"]
    head = [
        "group",
        "images",
        *(f"F1 @{r:g}px" for r in radii),
        f"P @{radii[-1]:g}px",
        f"R @{radii[-1]:g}px",
        "MAE (points)",
        "outside",
    ]
    lines = [
        "",
        f"## Localisation (point answers, frame: {summary['frame']})",
        "",
        "Points matched one to one within each radius (original image pixels); precision and recall are summed "
        "over the images of a group. MAE (points) scores the number of points listed as the count.",
        "",
        "| " + " | ".join(head) + " |",
        "|---" * len(head) + "|",
    ]
    groups = {"all": summary["overall"]}
    groups.update({f"dataset {k}": v for k, v in summary["per_dataset"].items()})
    groups.update({f"bucket {k}": v for k, v in summary["per_bucket"].items()})
    for name, m in groups.items():
        last = m[f"r{radii[-1]:g}"]
        cells = [
            name,
            str(m["n"]),
            *(format_value(m[f"r{r:g}"]["f1"]) for r in radii),
            format_value(last["precision"]),
            format_value(last["recall"]),
            format_value(m["count_from_points"]["mae"]),
            str(m["points_outside"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"{summary['unscored']} image(s) not scored (no points in the manifest, no truth or no answer).",
        "",
    ]
    if drawn:
        lines += ["Predicted points (red crosses) and true points (green rings):", ""]
        lines += [f"![{item_id}]({path})" for item_id, path in drawn] + [""]
    return "\n".join(lines)
