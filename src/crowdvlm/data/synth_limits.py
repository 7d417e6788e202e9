"""The largest synthetic data set ``crowdvlm data synth`` and experiment files may ask for.

Sizes reach the allocator directly: ``n`` sizes the arrays of planned counts, the image size each canvas
(``width * height * 3`` bytes, several copies while a style draws), ``max_count`` each image's point array.
Absurd values (a typo, a number pasted into the wrong key) once asked for 12-30 GB and were killed, or
filled the disk. They are refused up front, with the limit in the message. The limits sit far above any
counting set in use (real crowd images are up to about 9,000 x 6,000 pixels and 12,000 heads).
"""

from __future__ import annotations

MAX_IMAGES = 1_000_000  # images per set
MAX_SIDE = 8192  # pixels per side: an 8192 x 8192 RGB canvas is 200 MB
MAX_COUNT = 20_000  # objects per image


def check_synth_sizes(n: int, size: tuple[int, int], max_count: int) -> None:
    """Refuse a synthetic set past :data:`MAX_IMAGES`, :data:`MAX_SIDE` or :data:`MAX_COUNT`.

    Raises:
        ValueError: naming the value and the limit.
    """
    if n > MAX_IMAGES:
        raise ValueError(f"n is {n}: at most {MAX_IMAGES} images per synthetic set")
    if max(size) > MAX_SIDE:
        raise ValueError(f"image size {size[0]}x{size[1]}: at most {MAX_SIDE} pixels per side")
    if max_count > MAX_COUNT:
        raise ValueError(f"max_count is {max_count}: at most {MAX_COUNT} objects per image")
