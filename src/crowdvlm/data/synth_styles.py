"""Painters for the synthetic counting styles: each draws exactly ``count`` objects and returns their points.

A painter is ``paint(rng, count, (W, H)) -> (PIL.Image RGB, points float32 (count, 2))``. The point of an
object is where a crowd annotator would click: the head of a figure, the centre of a blob, car or plant.

Counting rule (what makes the label exact): every object is drawn, and only objects are drawn from the
object vocabulary of the style; background clutter never uses the object's shape. Objects never overlap,
except in ``people``, where nearer figures are drawn over farther ones (occlusion) but placement keeps every
head at least half visible (a farther head's centre is never inside a nearer figure's body, and heads never
overlap each other). Occluded figures count.

When ``count`` objects do not fit at the style's size, all objects shrink (down to a floor) until they fit,
so the count is always exact.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw

Size = tuple[int, int]
Painter = Callable[[np.random.Generator, int, Size], tuple[Image.Image, np.ndarray]]

_UNIT = np.stack([np.cos(np.linspace(0, 2 * np.pi, 18, endpoint=False)),
                  np.sin(np.linspace(0, 2 * np.pi, 18, endpoint=False))], axis=1)  # fmt: skip
MAX_MISSES = 400  # consecutive rejected proposals before shrinking the objects
SHRINK = 0.85


def _color(rng: np.random.Generator, low: int = 0, high: int = 256) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(low, high, 3))


def _vivid(rng: np.random.Generator) -> tuple[int, int, int]:
    """A saturated colour (one channel high, one low): never confused with a pale or grey background."""
    c = rng.integers(0, 256, 3)
    c[rng.integers(3)] = rng.integers(200, 256)
    c[rng.integers(3)] = rng.integers(0, 60)
    return tuple(int(v) for v in c)


def _ellipse_polygon(cx: float, cy: float, rx: float, ry: float, angle: float) -> list[tuple[float, float]]:
    c, s = np.cos(angle), np.sin(angle)
    pts = _UNIT * (rx, ry)
    xs = cx + pts[:, 0] * c - pts[:, 1] * s
    ys = cy + pts[:, 0] * s + pts[:, 1] * c
    return list(zip(xs.tolist(), ys.tolist(), strict=True))


def _textured(rng: np.random.Generator, size: Size, base, amplitude: int, grain: int = 4) -> Image.Image:
    """A background of colour ``base`` with low-frequency noise (grass, soil, asphalt)."""
    w, h = size
    small = rng.integers(
        -amplitude, amplitude + 1, (max(1, h // grain), max(1, w // grain), 1), dtype=np.int16
    )
    noise = np.asarray(Image.fromarray((small[..., 0] + 128).astype(np.uint8)).resize((w, h), Image.BILINEAR))
    arr = np.clip(
        np.asarray(base, np.int16)[None, None, :] + (noise.astype(np.int16) - 128)[..., None], 0, 255
    )
    return Image.fromarray(arr.astype(np.uint8), "RGB")


def place(
    rng: np.random.Generator,
    count: int,
    sample: Callable[[np.random.Generator, float], tuple[float, float, float]],
    fits: Callable[[np.ndarray, np.ndarray, int], bool],
    *,
    scale: float = 1.0,
    min_scale: float = 0.3,
) -> tuple[np.ndarray, float]:
    """Dart-throwing placement of ``count`` objects.

    ``sample(rng, scale) -> (x, y, r)`` proposes one object; ``fits(placed, candidate, n_placed)`` accepts it
    against the first ``n_placed`` rows of ``placed`` (rows are ``(x, y, r)``). When an object cannot be
    placed after ``MAX_MISSES`` proposals in a row, everything restarts at ``SHRINK`` times the scale, down to
    ``min_scale``.

    Raises:
        ValueError: when even ``min_scale`` leaves no room (count far too large for the image).

    Returns:
        (count, 3) array of placed ``(x, y, r)`` and the scale used.
    """
    placed = np.zeros((count, 3))
    while True:
        n = 0
        misses = 0  # consecutive rejections: the image is full at this scale once they pile up
        at_floor = scale <= min_scale
        patience = MAX_MISSES * (10 if at_floor else 1)
        while n < count and misses < patience:
            cand = np.array(sample(rng, scale))
            if fits(placed, cand, n):
                placed[n] = cand
                n += 1
                misses = 0
            else:
                misses += 1
        if n == count:
            return placed, scale
        if at_floor:
            raise ValueError(
                f"cannot fit {count} objects in the image even at {min_scale:.2f}x their size; "
                "use a larger image or a smaller count"
            )
        scale = max(min_scale, scale * SHRINK)


def _apart(gap: float, stretch: float = 1.0):
    """``fits`` for disks: centres at least ``stretch * (r_i + r_j) + gap`` apart."""

    def fits(placed: np.ndarray, cand: np.ndarray, n: int) -> bool:
        if n == 0:
            return True
        d2 = (placed[:n, 0] - cand[0]) ** 2 + (placed[:n, 1] - cand[1]) ** 2
        return bool(np.all(d2 >= (stretch * (placed[:n, 2] + cand[2]) + gap) ** 2))

    return fits


def _in_box(r_of: Callable[[float], float], size: Size, reach: float = 1.0):
    """``sample`` uniform over the image, keeping ``reach * r`` away from the border."""
    w, h = size

    def sample(rng: np.random.Generator, scale: float) -> tuple[float, float, float]:
        r = r_of(rng) * scale
        m = reach * r + 1
        return float(rng.uniform(m, w - m)), float(rng.uniform(m, h - m)), r

    return sample


def _radius(size: Size, lo: float, hi: float, floor: float = 2.5):
    """Radii drawn from [lo, hi] × the short side, never below ``floor`` pixels."""
    short = min(size)
    return lambda rng: max(floor, float(rng.uniform(lo, hi)) * short)


def paint_dots(rng, count, size):
    """Filled disks of vivid colours on white."""
    objs, _ = place(rng, count, _in_box(_radius(size, 0.025, 0.04), size), _apart(2))
    img = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(img)
    for x, y, r in objs:
        draw.ellipse((x - r, y - r, x + r, y + r), fill=_vivid(rng))
    return img, objs[:, :2]


def paint_rings(rng, count, size):
    """Hollow rings on a pale background: the out-of-domain style (never used for training by default)."""
    objs, _ = place(rng, count, _in_box(_radius(size, 0.025, 0.045, floor=3.5), size), _apart(2))
    img = Image.new("RGB", size, _color(rng, 225, 256))
    draw = ImageDraw.Draw(img)
    for x, y, r in objs:
        draw.ellipse((x - r, y - r, x + r, y + r), outline=_vivid(rng), width=max(1, round(r / 3)))
    return img, objs[:, :2]


def paint_shapes(rng, count, size):
    """Disks, squares and triangles of vivid colours on white (the in-domain mix of the miniature study in the reference notes)."""
    objs, _ = place(rng, count, _in_box(_radius(size, 0.025, 0.04), size), _apart(2, stretch=1.45))
    img = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(img)
    for x, y, r in objs:
        kind, color = rng.integers(3), _vivid(rng)
        if kind == 0:
            draw.ellipse((x - r, y - r, x + r, y + r), fill=color)
        elif kind == 1:
            draw.rectangle((x - r, y - r, x + r, y + r), fill=color)
        else:
            draw.regular_polygon((x, y, r * 1.3), 3, rotation=float(rng.uniform(0, 120)), fill=color)
    return img, objs[:, :2]


def paint_animals(rng, count, size):
    """Sheep-like blobs (a rotated ellipse body and a dark head) on textured grass, seen from above."""
    objs, _ = place(rng, count, _in_box(_radius(size, 0.022, 0.035), size, reach=1.6), _apart(2, stretch=1.6))
    img = _textured(rng, size, (70 + rng.integers(-15, 16), 125 + rng.integers(-20, 21), 50), 30)
    draw = ImageDraw.Draw(img)
    wool = [(235, 235, 225), (220, 205, 170), (140, 100, 60), (40, 35, 30)]
    for x, y, r in objs:
        angle = float(rng.uniform(0, 2 * np.pi))
        color = wool[rng.choice(4, p=[0.55, 0.2, 0.15, 0.1])]
        draw.polygon(_ellipse_polygon(x, y, 1.5 * r, r, angle), fill=color)
        hx, hy = x + 1.5 * r * np.cos(angle), y + 1.5 * r * np.sin(angle)
        hr = 0.45 * r
        draw.ellipse((hx - hr, hy - hr, hx + hr, hy + hr), fill=(25, 20, 20))
    return img, objs[:, :2]


def paint_plants(rng, count, size):
    """Wheat-head-like ellipses (elongated, rotated, golden or green) on furrowed soil."""
    w, h = size
    img = _textured(rng, size, (115 + rng.integers(-20, 21), 80, 50), 22)
    draw = ImageDraw.Draw(img)
    for y in np.arange(rng.uniform(0, 12), h, 12):  # furrows
        draw.line((0, y, w, y + rng.uniform(-6, 6)), fill=(85, 58, 36), width=2)
    objs, _ = place(rng, count, _in_box(_radius(size, 0.02, 0.03), size, reach=2.2), _apart(2, stretch=2.1))
    for x, y, r in objs:
        angle = float(rng.uniform(0, np.pi))
        color = (
            (int(rng.integers(190, 240)), int(rng.integers(160, 210)), 40)
            if rng.random() < 0.6
            else (60, int(rng.integers(140, 190)), 50)
        )
        draw.polygon(_ellipse_polygon(x, y, 2.1 * r, 0.8 * r, angle), fill=color, outline=(60, 45, 20))
    return img, objs[:, :2]


def paint_vehicles(rng, count, size):
    """Cars (a body and a dark windscreen) in the lanes of horizontal roads, seen from above."""
    w, h = size
    img = _textured(rng, size, (95, 120 + rng.integers(-15, 16), 75), 20)
    draw = ImageDraw.Draw(img)
    short = min(size)
    # Roads: 2-lane bands; enough lanes so that the cars fit with room to spare.
    car_len = max(7.0, float(rng.uniform(0.075, 0.1)) * short)
    per_lane = max(1, int(w / (car_len * 1.6)))
    n_roads = int(np.clip(np.ceil(1.5 * max(count, 1) / (2 * per_lane)), 1, 3))
    lane_w = min(car_len * 0.75, h / (2 * n_roads + 1.5))
    car_len = min(car_len, lane_w / 0.55)
    road_h = 2 * lane_w
    tops = (
        np.linspace(0, h - road_h, n_roads + 2)[1:-1] if n_roads > 1 else [float(rng.uniform(0, h - road_h))]
    )
    lanes = []
    for top in tops:
        draw.rectangle((0, top, w, top + road_h), fill=(70, 70, 75))
        for x0 in np.arange(0, w, 10.0):
            draw.line((x0, top + lane_w, x0 + 5, top + lane_w), fill=(230, 230, 230), width=1)
        lanes += [top + lane_w / 2, top + 1.5 * lane_w]
    lanes = np.array(lanes)

    def sample(rng, scale):
        half = car_len * scale / 2
        return float(rng.uniform(half + 1, w - half - 1)), float(lanes[rng.integers(len(lanes))]), half

    def fits(placed, cand, n):  # same lane: bumpers at least 2 px apart
        same = np.abs(placed[:n, 1] - cand[1]) < 1e-6
        return bool(np.all(np.abs(placed[:n, 0][same] - cand[0]) >= placed[:n, 2][same] + cand[2] + 2))

    objs, scale = place(rng, count, sample, fits, min_scale=0.05)
    half_w = lane_w * 0.3
    for x, y, half in objs:
        draw.rectangle((x - half, y - half_w, x + half, y + half_w), fill=_vivid(rng))
        front = x + half * 0.35 if rng.random() < 0.5 else x - half * 0.65
        draw.rectangle((front, y - half_w * 0.75, front + half * 0.3, y + half_w * 0.75), fill=(30, 35, 45))
    return img, objs[:, :2]


def paint_people(rng, count, size):
    """Pedestrian-like figures in a street scene with perspective (far = small and high) and occlusion."""
    w, h = size
    horizon = float(rng.uniform(0.22, 0.38)) * h
    sky = np.linspace(0, 1, max(1, int(horizon)))[:, None, None]
    img = _textured(rng, size, (150 + rng.integers(-20, 21), 140, 125), 18, grain=3)
    arr = np.array(img)
    top = np.array([150, 190, 235])[None, None, :] * (1 - sky) + np.array([215, 225, 235]) * sky
    arr[: len(sky)] = np.broadcast_to(top, (len(sky), w, 3)).astype(np.uint8)
    img = Image.fromarray(arr)
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(4, 9))):  # buildings on the horizon
        bx, bw, bh = rng.uniform(-10, w), rng.uniform(0.08, 0.2) * w, rng.uniform(0.1, 0.3) * h
        draw.rectangle((bx, horizon - bh, bx + bw, horizon), fill=_color(rng, 90, 170))
    for _ in range(int(rng.integers(6, 14))):  # clutter on the ground: paving, bins, benches (boxes only)
        cx, cy = rng.uniform(0, w), rng.uniform(horizon, h)
        cw, ch = rng.uniform(0.02, 0.12) * w, rng.uniform(0.01, 0.04) * h
        draw.rectangle((cx, cy, cx + cw, cy + ch), fill=_color(rng, 80, 200))
    r_far, r_near = max(2.0, 0.012 * h), max(3.5, 0.032 * h)

    # A figure stands at feet (x, y); its head radius r grows linearly with depth below the horizon.
    def sample(rng, scale):
        y = float(rng.uniform(horizon + 6 * r_far * scale, h))
        r = (r_far + (r_near - r_far) * (y - horizon) / (h - horizon)) * scale
        return float(rng.uniform(r + 1, w - r - 1)), y, r

    def fits(placed, cand, n):
        chx, chy = cand[0], cand[1] - 5 * cand[2]
        if chy - cand[2] < 0:  # the whole head inside the image
            return False
        if n == 0:
            return True
        p = placed[:n]
        hx, hy = p[:, 0], p[:, 1] - 5 * p[:, 2]  # heads
        if np.any((hx - chx) ** 2 + (hy - chy) ** 2 < (p[:, 2] + cand[2] + 1) ** 2):
            return False
        # The farther head's centre must stay outside the nearer body (x ± 1.3r, from 4r above the feet).
        near = p[:, 1] > cand[1]
        hidden_new = (
            near
            & (np.abs(chx - p[:, 0]) < 1.3 * p[:, 2] + 0.5 * cand[2])
            & (chy > p[:, 1] - 4 * p[:, 2] - 0.5 * cand[2])
        )
        hidden_old = (
            ~near
            & (np.abs(hx - cand[0]) < 1.3 * cand[2] + 0.5 * p[:, 2])
            & (hy > cand[1] - 4 * cand[2] - 0.5 * p[:, 2])
        )
        return not bool(np.any(hidden_new | hidden_old))

    objs, _ = place(rng, count, sample, fits, min_scale=0.25)
    for x, y, r in objs[np.argsort(objs[:, 1])]:  # far to near: nearer figures occlude
        shirt = _vivid(rng)
        draw.rectangle((x - 0.9 * r, y - 1.6 * r, x + 0.9 * r, y), fill=(40, 40, 60))  # legs
        draw.ellipse((x - 1.3 * r, y - 4.2 * r, x + 1.3 * r, y - 1.3 * r), fill=shirt)  # torso
        skin = (int(rng.integers(90, 240)), int(rng.integers(60, 190)), int(rng.integers(40, 150)))
        draw.ellipse((x - r, y - 6 * r, x + r, y - 4 * r), fill=skin, outline=(30, 25, 20))  # head
    heads = objs[:, :2].copy()
    heads[:, 1] -= 5 * objs[:, 2]
    return img, heads


# style -> (painter, the objects the question asks about)
STYLES: dict[str, tuple[Painter, str]] = {
    "dots": (paint_dots, "dots"),
    "shapes": (paint_shapes, "shapes"),
    "people": (paint_people, "people"),
    "animals": (paint_animals, "animals"),
    "vehicles": (paint_vehicles, "vehicles"),
    "plants": (paint_plants, "plants"),
    "rings": (paint_rings, "rings"),
}
