"""A grid of manifest images with their points and counts drawn on them, to check data by eye."""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw

from crowdvlm.data.images import open_image

TILE = 256  # pixels per grid cell (images are fitted inside)


def _tile(record: dict, tile: int) -> Image.Image:
    img = open_image(record["image"])  # upright, like the manifest's points
    scale = tile / max(img.size)
    img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BILINEAR)
    draw = ImageDraw.Draw(img)
    r = max(1.5, tile / 120)
    for x, y in record.get("points") or []:
        x, y = x * scale, y * scale
        draw.ellipse((x - r, y - r, x + r, y + r), outline=(255, 0, 0), width=1)
    label = f"{record.get('solution')}  {record.get('dataset', '')}"
    draw.rectangle((0, 0, 7 * len(label) + 6, 14), fill=(0, 0, 0))
    draw.text((3, 1), label, fill=(255, 255, 0))
    canvas = Image.new("RGB", (tile, tile), (40, 40, 40))
    canvas.paste(img, ((tile - img.width) // 2, (tile - img.height) // 2))
    return canvas


def show_grid(
    records: list[dict],
    out: str | Path,
    *,
    n: int = 8,
    seed: int | None = 0,
    cols: int | None = None,
    tile: int = TILE,
) -> Path:
    """Draw ``n`` records (chosen at random with ``seed``; ``seed=None`` takes the first ``n``) into a grid PNG.

    Each cell shows the image with a red circle on every point and "<count>  <dataset>" in the corner.
    """
    if not records:
        raise ValueError("no records to show")
    chosen = records[:n] if seed is None else random.Random(seed).sample(records, min(n, len(records)))
    cols = cols or min(4, len(chosen))
    rows = -(-len(chosen) // cols)
    grid = Image.new("RGB", (cols * tile, rows * tile), (0, 0, 0))
    for i, rec in enumerate(chosen):
        grid.paste(_tile(rec, tile), ((i % cols) * tile, (i // cols) * tile))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out)
    return out
