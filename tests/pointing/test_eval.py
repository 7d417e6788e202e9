"""Localisation metrics and their place in an eval run, against hand computations (no model needed)."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from crowdvlm.data.manifest import manifest_to_dataset, write_manifest
from crowdvlm.evaluate.localisation import write_localisation
from crowdvlm.evaluate.predictions import Prediction, PredictionWriter
from crowdvlm.pointing.metrics import ImagePoints, localisation_summary
from crowdvlm.resize import ResizeRule

RULE = ResizeRule(factor=28, min_pixels=56 * 56, max_pixels=112 * 112)  # 224x168 -> the 112x84 frame


def answer(points) -> str:
    return (
        json.dumps([{"point_2d": list(p), "label": "object"} for p in points])
        + f"<answer>{len(points)}</answer>"
    )


@pytest.fixture
def run_dir(tmp_path):
    """A manifest of three 224x168 images and a run that answered two of them with points (frame 112x84)."""
    for name in ("a", "b", "c"):
        Image.new("RGB", (224, 168), "white").save(tmp_path / f"{name}.png")
    records = [
        {
            "id": "a",
            "image": "a.png",
            "problem": "How many?",
            "solution": 3,
            "dataset": "d1",
            "width": 224,
            "height": 168,
            "points": [[20, 20], [100, 60], [200, 160]],
        },
        {"id": "b", "image": "b.png", "problem": "How many?", "solution": 0, "dataset": "d2", "points": []},
        {
            "id": "c",
            "image": "c.png",
            "problem": "How many?",
            "solution": 1,
            "dataset": "d2",
            "points": [[5, 5]],
        },
    ]
    manifest = write_manifest(records, tmp_path / "m.jsonl")
    run = tmp_path / "run"
    texts = {"a": answer([(10, 10), (51, 30), (0, 0), (200, 5)]), "b": answer([])}
    with PredictionWriter(run / "predictions.jsonl") as w:
        w.write_batch(
            [
                Prediction("a", "d1", str(tmp_path / "a.png"), 3, texts["a"], 4, True),
                Prediction("b", "d2", str(tmp_path / "b.png"), 0, texts["b"], 0, True),
                Prediction("c", "d2", str(tmp_path / "c.png"), 1, "", None, False, error="cannot load image"),
            ]
        )
    (run / "metrics.json").write_text("{}")
    (run / "report.md").write_text("# Evaluation report\n")
    return run, manifest


def test_localisation_of_a_run_matches_a_hand_computation(run_dir):
    run, manifest = run_dir
    summary = write_localisation(run, [manifest], "resized", RULE, radii=(1.0, 4.0), overlays=1)
    # Image a, in original pixels: (20,20) exact, (102,60) 2 px off, (0,0) far; (400,10) lies outside the frame.
    overall = summary["overall"]
    assert (overall["n"], overall["points_predicted"], overall["points_true"], overall["points_outside"]) == (
        2,
        3,
        3,
        1,
    )
    assert overall["r1"] == {"matched": 1, "precision": 1 / 3, "recall": 1 / 3, "f1": 1 / 3}
    assert overall["r4"] == {"matched": 2, "precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3}
    assert overall["count_from_points"]["mae"] == 0.0  # a: 3 points for 3, b: none for 0
    assert summary["per_dataset"]["d2"]["r4"] == {"matched": 0, "precision": None, "recall": None, "f1": None}
    assert list(summary["per_bucket"]) == ["0-10"] and summary["unscored"] == 1
    assert json.loads((run / "metrics.json").read_text())["localisation"]["overall"]["r4"]["f1"] == 2 / 3
    assert json.loads((run / "localisation.json").read_text()) == summary
    report = (run / "report.md").read_text()
    assert "## Localisation" in report and "| all | 2 | 0.33 | 0.67 |" in report
    assert "![a](overlays/a.png)" in report and (run / "overlays" / "a.png").is_file()


def test_the_frame_decides_where_points_land(run_dir):
    """The same answer read in the wrong frame (original pixels) no longer matches."""
    run, manifest = run_dir
    summary = write_localisation(run, [manifest], "original", None, radii=(4.0,), overlays=0)
    assert summary["overall"]["r4"]["matched"] == 0


def test_summary_groups_by_dataset_and_bucket():
    rows = [ImagePoints("x", 12, 12, 12, {8.0: 6}), ImagePoints("y", 3, 5, 3, {8.0: 3})]
    s = localisation_summary(rows, radii=(8.0,))
    assert (
        s["per_bucket"]["11-50"]["r8"]["recall"] == 0.5 and s["per_bucket"]["0-10"]["r8"]["precision"] == 0.6
    )
    assert s["overall"]["r8"]["f1"] == 2 * 9 / 32 and s["overall"]["count_from_points"]["mae"] == 1.0


def test_point_dataset_columns_and_bad_records(tmp_path):
    Image.new("RGB", (60, 40)).save(tmp_path / "i.png")
    good = [
        {"id": "a", "image": "i.png", "problem": "How many?", "solution": 1, "points": [[3, 4]]},
        {"id": "b", "image": "i.png", "problem": "How many?", "solution": 0},
    ]
    ds = manifest_to_dataset(write_manifest(good, tmp_path / "g.jsonl"), output="points", with_points=True)
    assert ds["points"] == [[[3.0, 4.0]], []] and ds["image_size"] == [[60, 40], [60, 40]]
    assert "points" not in manifest_to_dataset(tmp_path / "g.jsonl").column_names
    bad = [{"image": "i.png", "problem": "How many?", "solution": 2}]
    with pytest.raises(ValueError, match=r"b\.jsonl.*record 1.*count 2 but no points"):
        manifest_to_dataset(write_manifest(bad, tmp_path / "b.jsonl"), with_points=True)


def test_image_size_prefers_the_manifest_and_turns_exif_rotated_files(tmp_path):
    from crowdvlm.pointing.targets import image_size

    img = Image.new("RGB", (60, 40))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display: decoded as 40x60
    img.save(tmp_path / "r.jpg", exif=exif)
    assert image_size(tmp_path / "r.jpg") == (40, 60)
    assert image_size(tmp_path / "r.jpg", 10, 20) == (10, 20)


def test_resized_frame_needs_a_qwen_processor(tmp_path):
    from crowdvlm.evaluate.localisation import frame_rule_for

    class ApiBackend:  # no processor, like the openai backend
        pass

    with pytest.raises(ValueError, match="--point-frame relative-1000"):
        frame_rule_for("resized", ApiBackend(), str(tmp_path / "no-such-model"))
    assert frame_rule_for("relative-1000", ApiBackend(), "gpt-4o") is None
