"""Procedural counting images with exact counts and points: the embedded data for tests and the demo.

``generate(out_dir, n, style, min_count, max_count, size, seed)`` writes ``out_dir/images/*.jpg`` and
``out_dir/manifest.jsonl`` and returns the manifest path. Image ``i`` depends only on ``(seed, i)``, its
style and the count range, so a run is reproducible and the first images of a larger run are those of a
smaller one.

Styles (see :mod:`crowdvlm.data.synth_styles` for the counting rule): ``dots``, ``shapes``, ``people``
(perspective, occlusion, cluttered street), ``animals`` (blobs on grass), ``vehicles`` (cars on roads),
``plants`` (ellipses on soil), and ``rings`` (hollow circles, meant as the out-of-domain style).

>>> import tempfile, json
>>> path = generate(tempfile.mkdtemp(), n=2, style="dots", min_count=3, max_count=3, size=(64, 64), seed=0)
>>> [json.loads(line)["solution"] for line in open(path)]
[3, 3]
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from crowdvlm.data.manifest import write_manifest
from crowdvlm.data.synth_limits import check_synth_sizes
from crowdvlm.data.synth_styles import STYLES
from crowdvlm.prompts import question_for

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.jsonl"
SAVE_OPTIONS = {"jpg": {"quality": 95}, "png": {"compress_level": 1}}


def render(
    style: str, count: int, size: tuple[int, int], rng: np.random.Generator
) -> tuple[Image.Image, np.ndarray]:
    """Draw one image of ``style`` with exactly ``count`` objects; returns the image and (count, 2) points."""
    if style not in STYLES:
        raise ValueError(f"unknown synthetic style {style!r}; styles: {sorted(STYLES)}")
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    painter, _ = STYLES[style]
    image, points = painter(rng, count, tuple(size))
    assert len(points) == count, (style, count, len(points))  # the painters' contract
    return image, points


def synth_record(
    index: int, style: str, count: int, size: tuple[int, int], seed: int
) -> tuple[Image.Image, dict]:
    """Image ``index`` of a run with ``seed``: the same inputs always give the same pixels and points."""
    rng = np.random.default_rng([seed, index])
    image, points = render(style, count, size, rng)
    record = {
        "problem": question_for(STYLES[style][1]),
        "solution": count,
        "dataset": f"synth-{style}",
        "width": size[0],
        "height": size[1],
        "points": points.round(2).tolist(),
    }
    return image, record


def generate(
    out_dir: str | Path,
    n: int,
    style: str | Sequence[str],
    min_count: int,
    max_count: int,
    size: tuple[int, int] = (224, 224),
    seed: int = 0,
    *,
    split: str = "train",
    image_format: str = "jpg",
    progress: bool = True,
) -> Path:
    """Write ``n`` synthetic images and their manifest; return the manifest path.

    Args:
        out_dir: folder for ``images/`` and ``manifest.jsonl`` (created; existing files are overwritten).
        n: number of images.
        style: one style, or several (each image draws one of them uniformly; ``dataset`` is
            ``synth-<style>`` per image, so metrics can be split by style).
        min_count, max_count: counts are uniform integers in ``[min_count, max_count]``.
        size: ``(width, height)`` in pixels.
        seed: the run's seed; image ``i`` uses ``numpy.random.default_rng([seed, i])``.
        split: the value of every record's ``split``.
        image_format: "jpg" (quality 95, the default: about 20x faster to write than PNG for the textured
            styles, and real counting datasets are JPEGs too) or "png" (lossless).
        progress: show a progress bar.
    """
    styles = [style] if isinstance(style, str) else list(style)
    unknown = [s for s in styles if s not in STYLES]
    if not styles or unknown:
        raise ValueError(f"unknown synthetic style(s) {unknown or styles}; styles: {sorted(STYLES)}")
    if not 0 <= min_count <= max_count:
        raise ValueError(f"need 0 <= min_count <= max_count, got {min_count}, {max_count}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    width, height = size
    if image_format not in SAVE_OPTIONS:
        raise ValueError(f"image_format must be one of {sorted(SAVE_OPTIONS)}, got {image_format!r}")
    if width < 16 or height < 16:
        raise ValueError(f"image size must be at least 16x16, got {width}x{height}")
    check_synth_sizes(n, (width, height), max_count)  # before anything is allocated or written

    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    # Counts and styles come from their own stream, so they do not depend on how images are drawn.
    plan = np.random.default_rng([seed, 2**31])
    counts = plan.integers(min_count, max_count + 1, n)
    chosen = plan.integers(0, len(styles), n)
    digits = max(6, len(str(n)))
    records = []
    for i in tqdm(range(n), desc=f"synth {'+'.join(styles)}", unit="img", disable=not progress, leave=False):
        image, record = synth_record(i, styles[chosen[i]], int(counts[i]), (width, height), seed)
        name = f"images/{i:0{digits}d}.{image_format}"
        image.save(out_dir / name, **SAVE_OPTIONS[image_format])
        records.append(
            {
                "id": f"{record['dataset']}/{out_dir.name}/{i:0{digits}d}",
                "image": name,
                "split": split,
                **record,
            }
        )
    manifest = write_manifest(
        ({**r, "image": str((out_dir / r["image"]).resolve())} for r in records), out_dir / MANIFEST_NAME
    )
    logger.info(
        "wrote %d %s images (counts %d-%d) to %s", n, "+".join(styles), min_count, max_count, manifest
    )
    return manifest
