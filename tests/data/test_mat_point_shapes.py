"""``annPoints`` / ``location`` in the ``.mat`` formats must be N x 2: a transposed 2 x N or a 1 x N row is refused.

Read as rows, a 2 x 5 array is two points with three coordinates each and a 1 x 6 row is one point: the
count would silently become 2 or 1.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.io import savemat

import data_writers as native
from crowdvlm.data.convert import convert
from crowdvlm.data.errors import DataError

FIVE = np.array([[1, 2], [3, 4], [5, 6], [7, 8], [9, 10]], dtype=np.float64)
BAD_SHAPES = {"transposed": FIVE.T, "one row": FIVE.reshape(1, -1)}


def _qnrf(root, array):
    folder = native.write_qnrf(root, "Train", {"img_0001": []})
    savemat(folder / "img_0001_ann.mat", {"annPoints": array})


def _ucf_cc_50(root, array):
    folder = native.write_ucf_cc_50(root, {1: []})
    savemat(folder / "1_ann.mat", {"annPoints": array})


def _shanghaitech(root, array):
    split = native.write_shanghaitech(root, samples={1: []})
    st = np.empty((1, 1), dtype=[("location", "O"), ("number", "O")])
    st[0, 0]["location"] = array
    st[0, 0]["number"] = np.array([[5.0]])
    cell = np.empty((1, 1), dtype=object)
    cell[0, 0] = st
    savemat(split / "ground_truth" / "GT_IMG_1.mat", {"image_info": cell})


WRITERS = {"ucf-qnrf": _qnrf, "ucf-cc-50": _ucf_cc_50, "shanghaitech": _shanghaitech}


@pytest.mark.parametrize("fmt", sorted(WRITERS))
@pytest.mark.parametrize("shape", sorted(BAD_SHAPES))
def test_mat_points_that_are_not_n_by_2_are_refused(tmp_path, fmt, shape):
    WRITERS[fmt](tmp_path, BAD_SHAPES[shape])
    with pytest.raises(
        DataError, match=r"expected an N x 2 array of \[x, y\], got shape \((2, 5|1, 10)\)"
    ) as caught:
        convert(fmt, tmp_path, tmp_path / "m.jsonl", progress=False)
    assert caught.value.kind == "bad-coordinates" and caught.value.file.endswith(".mat")


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_mat_points_n_by_2_are_read(tmp_path, fmt):
    WRITERS[fmt](tmp_path, FIVE)
    result = convert(fmt, tmp_path, tmp_path / "m.jsonl", progress=False)
    assert result.n_records == 1
