"""Synthetic data: exact counts and points, determinism, every style; and the data CLI on top of it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from crowdvlm.data.cli import main as data_main
from crowdvlm.data.manifest import read_manifest
from crowdvlm.data.synth import generate, render
from crowdvlm.data.synth_styles import STYLES
from crowdvlm.errors import UsageError

SIZE = (112, 96)


@pytest.mark.parametrize("style", sorted(STYLES))
@pytest.mark.parametrize("count", [0, 1, 7, 25])
def test_exact_count_and_points_inside(style, count):
    image, points = render(style, count, SIZE, np.random.default_rng(count))
    assert image.size == SIZE and image.mode == "RGB"
    assert points.shape == (count, 2)
    assert np.all(points >= 0) and np.all(points[:, 0] <= SIZE[0]) and np.all(points[:, 1] <= SIZE[1])
    if count > 1:  # distinct objects: no two points closer than 3 px
        d = np.sqrt(((points[:, None, :] - points[None, :, :]) ** 2).sum(-1)) + np.eye(count) * 1e9
        assert d.min() >= 3


@pytest.mark.parametrize("style", ["dots", "shapes", "animals", "plants", "vehicles", "people"])
def test_every_point_is_on_an_object(style):
    # Render the same scene twice, with and without objects: the background stream is drawn first, so the
    # two agree wherever no object was painted; every point must sit on painted pixels.
    with_objects, points = render(style, 12, SIZE, np.random.default_rng(5))
    empty, _ = render(style, 0, SIZE, np.random.default_rng(5))
    diff = np.abs(np.asarray(with_objects, np.int16) - np.asarray(empty, np.int16)).sum(-1) > 0
    hits = [diff[int(round(y)), int(round(x))] for x, y in points]
    assert all(hits)


@pytest.mark.parametrize("style", sorted(STYLES))
def test_same_seed_same_pixels(style):
    a, pa = render(style, 9, SIZE, np.random.default_rng([3, 1]))
    b, pb = render(style, 9, SIZE, np.random.default_rng([3, 1]))
    c, _ = render(style, 9, SIZE, np.random.default_rng([4, 1]))
    assert a.tobytes() == b.tobytes() and np.array_equal(pa, pb)
    assert a.tobytes() != c.tobytes()


def test_generate_manifest_ranges_and_prefix_stability(tmp_path):
    small = generate(
        tmp_path / "a", n=4, style="dots", min_count=2, max_count=9, size=(64, 48), seed=7, progress=False
    )
    large = generate(
        tmp_path / "b",
        n=12,
        style="dots",
        min_count=2,
        max_count=9,
        size=(64, 48),
        seed=7,
        split="val",
        progress=False,
    )
    recs_small, recs_large = read_manifest(small), read_manifest(large)
    assert [r["solution"] for r in recs_small] == [r["solution"] for r in recs_large[:4]]
    assert Image.open(recs_small[3]["image"]).tobytes() == Image.open(recs_large[3]["image"]).tobytes()
    assert all(2 <= r["solution"] <= 9 and len(r["points"]) == r["solution"] for r in recs_large)
    assert len({r["solution"] for r in recs_large}) > 2
    assert {(r["dataset"], r["split"], r["width"], r["height"]) for r in recs_large} == {
        ("synth-dots", "val", 64, 48)
    }
    assert recs_large[0]["problem"] == "How many dots are in the image?"
    assert len({r["id"] for r in recs_large}) == 12
    first_line = json.loads(large.read_text().splitlines()[0])
    assert first_line["image"] == "images/000000.jpg"  # relative: the folder can move


def test_generate_lossless_png(tmp_path):
    path = generate(
        tmp_path,
        n=2,
        style="shapes",
        min_count=3,
        max_count=3,
        size=(40, 40),
        seed=2,
        image_format="png",
        progress=False,
    )
    rec = read_manifest(path)[1]
    expected, _ = render("shapes", 3, (40, 40), np.random.default_rng([2, 1]))
    assert rec["image"].endswith(".png") and Image.open(rec["image"]).tobytes() == expected.tobytes()


def test_generate_several_styles(tmp_path):
    path = generate(
        tmp_path,
        n=30,
        style=["people", "animals", "vehicles"],
        min_count=0,
        max_count=5,
        size=(64, 64),
        seed=1,
        progress=False,
    )
    recs = read_manifest(path)
    assert {r["dataset"] for r in recs} == {"synth-people", "synth-animals", "synth-vehicles"}
    questions = {r["dataset"]: r["problem"] for r in recs}
    assert questions["synth-people"] == "How many people are in the image?"


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"style": "stars"}, "unknown synthetic style"),
        ({"min_count": 5, "max_count": 2}, "min_count <= max_count"),
        ({"size": (8, 8)}, "at least 16x16"),
        ({"image_format": "gif"}, "image_format must be one of"),
        ({"min_count": 2000, "max_count": 2000}, "cannot fit 2000 objects"),
    ],
)
def test_generate_refuses_bad_arguments(tmp_path, kwargs, message):
    args = {"n": 1, "style": "dots", "min_count": 0, "max_count": 3, "size": (32, 32), "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=message):
        generate(tmp_path, progress=False, **args)


def test_cli_synth_stats_show(tmp_path, capsys):
    out = tmp_path / "synth"
    assert (
        data_main(
            [
                "synth",
                "--out",
                str(out),
                "--n",
                "6",
                "--style",
                "dots,rings",
                "--min-count",
                "1",
                "--max-count",
                "4",
                "--size",
                "48x40",
                "--seed",
                "3",
                "--no-progress",
            ]
        )
        == 0
    )
    manifest = out / "manifest.jsonl"
    recs = read_manifest(manifest)
    assert len(recs) == 6 and all(1 <= r["solution"] <= 4 for r in recs)
    capsys.readouterr()

    assert data_main(["stats", str(manifest), "--json", "--plot", str(tmp_path / "hist.png")]) == 0
    printed = capsys.readouterr().out
    stats = json.loads(printed[: printed.rindex("}") + 1])
    assert stats["n"] == 6 and stats["counts"]["total"] == sum(r["solution"] for r in recs)
    assert sum(g["n"] for g in stats["groups"].values()) == 6
    assert stats["sizes"]["min_w"] == 48 and stats["sizes"]["max_h"] == 40
    assert Image.open(tmp_path / "hist.png").size[0] > 100

    assert data_main(["stats", str(manifest)]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].startswith("dataset/split") and "all" in table

    assert data_main(["show", str(manifest), "--n", "5", "--out", str(tmp_path / "grid.png")]) == 0
    assert Image.open(tmp_path / "grid.png").size == (4 * 256, 2 * 256)


def test_cli_help_and_bad_size(capsys):
    with pytest.raises(SystemExit) as info:
        data_main(["--help"])
    assert info.value.code == 0
    with pytest.raises(UsageError, match="expected WxH"):
        data_main(["synth", "--out", "x", "--n", "1", "--size", "big"])
