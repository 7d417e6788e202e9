"""Writers of tiny datasets in each native on-disk format, for the reader tests.

The MATLAB structures are those of the released datasets: ShanghaiTech's ``image_info`` is a
1x1 cell holding a 1x1 struct with fields ``location`` (N x 2) and ``number``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.io import savemat


def write_image(path: Path, size=(40, 30), mode="RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(path)))
    channels = 3 if mode == "RGB" else 1
    arr = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    Image.fromarray(arr[..., 0] if channels == 1 else arr, mode).save(path)
    return path


def shanghaitech_mat(path: Path, points, number=None) -> Path:
    """``GT_IMG_<k>.mat``: image_info = {struct(location=points, number=N)} (1x1 cell of a 1x1 struct)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    st = np.empty((1, 1), dtype=[("location", "O"), ("number", "O")])
    st[0, 0]["location"] = pts
    st[0, 0]["number"] = np.array([[len(pts) if number is None else number]], dtype=np.float64)
    cell = np.empty((1, 1), dtype=object)
    cell[0, 0] = st
    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(path, {"image_info": cell})
    return path


def ann_points_mat(path: Path, points, key="annPoints") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(path, {key: np.asarray(points, dtype=np.float64).reshape(-1, 2)})
    return path


def write_shanghaitech(
    root: Path, *, part="A", split="train", final=True, hyphen=False, samples=None
) -> Path:
    """``samples``: {k: points} for IMG_<k>; returns the split folder."""
    split_dir = root / f"part_{part}{'_final' if final else ''}" / f"{split}_data"
    gt = split_dir / ("ground-truth" if hyphen else "ground_truth")
    for k, pts in (samples or {}).items():
        write_image(split_dir / "images" / f"IMG_{k}.jpg", size=(64, 48))
        shanghaitech_mat(gt / f"GT_IMG_{k}.mat", pts)
    return split_dir


def write_qnrf(root: Path, split="Train", samples=None, size=(50, 40)) -> Path:
    folder = root / "UCF-QNRF_ECCV18" / split
    for name, pts in (samples or {}).items():
        write_image(folder / f"{name}.jpg", size=size)
        ann_points_mat(folder / f"{name}_ann.mat", pts)
    return folder


def write_ucf_cc_50(root: Path, samples) -> Path:
    folder = root / "UCF_CC_50"
    for k, pts in samples.items():
        write_image(folder / f"{k}.jpg", size=(40, 40), mode="L")  # grayscale, like the real images
        ann_points_mat(folder / f"{k}_ann.mat", pts)
    return folder


def write_jhu(root: Path, split="train", samples=None, labels=None) -> Path:
    """``samples``: {id: points}; ``labels``: {id: (total, scene, weather, distractor)}."""
    folder = root / "jhu_crowd_v2.0" / split
    (folder / "gt").mkdir(parents=True, exist_ok=True)
    for image_id, pts in (samples or {}).items():
        write_image(folder / "images" / f"{image_id}.jpg")
        lines = [f"{int(x)} {int(y)} 4 5 1 0" for x, y in pts]
        (folder / "gt" / f"{image_id}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
    if labels is not None:
        rows = [f"{i},{t},{scene},{w},{d}" for i, (t, scene, w, d) in labels.items()]
        (folder / "image_labels.txt").write_text("\n".join(rows) + "\n")
    return folder


def write_nwpu(root: Path, train=None, val=None, test=()) -> Path:
    """``train``/``val``: {id: points}; ``test``: ids (no annotations, as in the release)."""
    root.mkdir(parents=True, exist_ok=True)
    for split, samples in (("train", train or {}), ("val", val or {})):
        lines = []
        for image_id, pts in samples.items():
            write_image(root / "images_part1" / f"{image_id}.jpg")
            ann = {"img_id": f"{image_id}.jpg", "human_num": len(pts), "points": pts, "boxes": []}
            (root / "jsons").mkdir(exist_ok=True)
            (root / "jsons" / f"{image_id}.json").write_text(json.dumps(ann))
            lines.append(f"{image_id} 2 1")
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    for image_id in test:
        write_image(root / "images_part2" / f"{image_id}.jpg")
    (root / "test.txt").write_text("".join(f"{i}\n" for i in test))
    return root


def write_fsc147(root: Path, splits: dict[str, dict[str, tuple[str, list]]]) -> Path:
    """``splits``: {split: {"<id>.jpg": (class, points)}}; images are 384 px high, like images_384_VarV2."""
    annotations, split_lists, classes = {}, {}, []
    for split, samples in splits.items():
        split_lists[split] = list(samples)
        for name, (cls, pts) in samples.items():
            write_image(root / "images_384_VarV2" / name, size=(96, 384))
            box = [[1, 2], [1, 12], [11, 12], [11, 2]]
            annotations[name] = {
                "H": 768,
                "W": 192,
                "points": pts,
                "box_examples_coordinates": [box] * 3,
                "img_path": "/authors/machine/" + name,
            }
            classes.append(f"{name}\t{cls}")
    (root / "annotation_FSC147_384.json").write_text(json.dumps(annotations))
    (root / "Train_Test_Val_FSC_147.json").write_text(json.dumps(split_lists))
    (root / "ImageClasses_FSC147.txt").write_text("\n".join(classes) + "\n")
    return root
