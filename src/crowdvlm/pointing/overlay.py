"""Images with points drawn on them: predicted points (red crosses) and, when known, true points (green rings)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = ["draw_points"]

PRED_COLOUR = (230, 30, 30)
TRUE_COLOUR = (40, 200, 60)


def draw_points(
    image_path: str | Path,
    out_path: str | Path,
    pred: Sequence[Sequence[float]],
    true: Sequence[Sequence[float]] | None = None,
    *,
    radius: float | None = None,
) -> Path:
    """Draw ``pred`` (and ``true``) points, in original image pixels, on the image and save it as ``out_path``.

    Args:
        image_path: the image (decoded with its EXIF orientation applied, as the models see it).
        out_path: where to write the overlay (PNG or JPEG by its suffix).
        pred: predicted points.
        true: true points, drawn as rings of the matching ``radius`` (or a size relative to the image).
        radius: the matching radius to draw the rings with, in pixels.
    """
    from PIL import ImageDraw

    from crowdvlm.data.images import open_image

    canvas = open_image(image_path)  # upright and RGB, a regular file only
    draw = ImageDraw.Draw(canvas)
    mark = max(2.0, min(canvas.size) / 80)
    ring = radius if radius is not None else mark * 1.5
    for x, y in true or []:
        draw.ellipse(
            (x - ring, y - ring, x + ring, y + ring), outline=TRUE_COLOUR, width=max(1, int(mark / 2))
        )
    for x, y in pred:
        draw.line((x - mark, y - mark, x + mark, y + mark), fill=PRED_COLOUR, width=max(1, int(mark / 2)))
        draw.line((x - mark, y + mark, x + mark, y - mark), fill=PRED_COLOUR, width=max(1, int(mark / 2)))
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out_path)
    return out_path
