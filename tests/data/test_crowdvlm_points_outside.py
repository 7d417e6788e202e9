"""Points outside their image in ``crowdvlm``-format records are dropped and counted, as UCF-QNRF's are."""

from __future__ import annotations

import json

import pytest

import data_writers as native
from crowdvlm.data.convert import convert
from crowdvlm.data.manifest import read_manifest


@pytest.mark.parametrize(("keep_outside", "expected", "dropped"), [(False, 2, 3), (True, 5, 0)])
def test_crowdvlm_points_outside_the_image_are_dropped_and_counted(tmp_path, keep_outside, expected, dropped):
    native.write_image(tmp_path / "imgs" / "0.png", size=(50, 40))
    # borders count as inside (the BL / DM-Count rule); 51, 41 and the far point are outside
    points = [[0, 0], [50, 40], [51, 10], [10, 41], [9000, 9000]]
    record = {"image": "imgs/0.png", "problem": "How many?", "solution": 5, "points": points}
    (tmp_path / "r.json").write_text(json.dumps([record]))
    result = convert(
        "crowdvlm", tmp_path / "r.json", tmp_path / "m.jsonl", keep_outside=keep_outside, progress=False
    )
    (rec,) = read_manifest(result.manifest)
    assert rec["solution"] == expected and len(rec["points"]) == expected
    assert result.dropped_outside == dropped
    assert rec.get("meta", {}).get("dropped_outside", 0) == dropped
