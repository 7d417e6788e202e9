"""Points drawn on an image: the model's answer made visible (no gradio import here)."""

from __future__ import annotations

from PIL import Image, ImageDraw

__all__ = ["draw_points"]


def draw_points(image: Image.Image, points: list[tuple[float, float]]) -> Image.Image:
    """A copy of ``image`` with a red dot, ringed in white (visible on dark and light scenes), at each point.

    Points outside the image are skipped: a model's answer is not trusted to stay in the frame.

    Args:
        image: the image (any mode; the copy is RGB).
        points: ``(x, y)`` in the image's pixels.

    >>> out = draw_points(Image.new("RGB", (40, 30), "black"), [(20, 15), (500, 5)])
    >>> out.getpixel((20, 15)), out.getpixel((2, 2))
    ((230, 30, 30), (0, 0, 0))
    """
    out = image.convert("RGB")  # always a copy: the caller's image is not drawn on
    draw = ImageDraw.Draw(out)
    radius = max(2.0, min(out.size) / 60)  # (px) visible on a thumbnail, not hiding a dense crowd
    for x, y in points:
        if not (0 <= x < out.width and 0 <= y < out.height):
            continue
        box = (x - radius, y - radius, x + radius, y + radius)
        draw.ellipse(box, fill=(230, 30, 30), outline=(255, 255, 255), width=max(1, int(radius / 3)))
    return out
