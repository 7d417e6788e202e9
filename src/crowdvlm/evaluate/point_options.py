"""The point-answer options of `crowdvlm eval` and `crowdvlm predict` (``--output-format points``), and their use.

Kept apart from :mod:`crowdvlm.evaluate.cli` so that each command's flow stays readable; heavy imports happen
inside the functions, so ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_point_options", "point_frame_rule", "predicted_points"]


def _radii(text: str) -> tuple[float, ...]:
    try:
        radii = tuple(float(r) for r in text.split(",") if r.strip())
    except ValueError:
        radii = ()
    if not radii or any(r <= 0 for r in radii):
        raise argparse.ArgumentTypeError(f"expected positive radii in pixels, e.g. 4,8,16; got {text!r}")
    return radii


def add_point_options(parser: argparse.ArgumentParser, *, evaluation: bool = False) -> None:
    """``--point-frame`` (both commands); with ``evaluation`` also ``--radii`` and ``--overlays``."""
    from crowdvlm.pointing.frame import CONVENTIONS
    from crowdvlm.pointing.metrics import DEFAULT_RADII

    points = parser.add_argument_group("point answers (--output-format points)")
    points.add_argument(
        "--point-frame",
        choices=CONVENTIONS,
        default="resized",
        help="the frame the model points in: resized (Qwen2.5-VL: pixels of the processor-resized image; "
        "default), relative-1000 (Qwen3-VL: 0-1000 per side) or original (image pixels)",
    )
    if evaluation:
        radii = ",".join(f"{r:g}" for r in DEFAULT_RADII)
        points.add_argument(
            "--radii",
            type=_radii,
            default=DEFAULT_RADII,
            help=f"matching radii of the localisation metrics, original pixels (default: {radii})",
        )
        points.add_argument(
            "--overlays",
            type=int,
            default=4,
            help="images drawn with their points in the report (default: 4)",
        )


def point_frame_rule(args: argparse.Namespace, backend):
    """The resize rule for ``--point-frame resized`` (None for the other frames).

    Raises:
        UsageError: ``resized`` without a Qwen-VL processor (an API model): choose another frame.
    """
    from crowdvlm.errors import UsageError
    from crowdvlm.evaluate.localisation import frame_rule_for

    try:
        return frame_rule_for(args.point_frame, backend, args.model, args.min_pixels, args.max_pixels)
    except ValueError as err:
        raise UsageError(str(err)) from None


def predicted_points(image: Path, text: str, args: argparse.Namespace, rule) -> list[list[float]]:
    """The answer's points in original image pixels; with ``--points DIR`` also drawn on the image there."""
    from crowdvlm.parsing import parse_points
    from crowdvlm.pointing.frame import Frame
    from crowdvlm.pointing.targets import image_size

    frame = Frame.make(args.point_frame, *image_size(image), rule)
    points = frame.from_frame(parse_points(text, (frame.width, frame.height)).points).tolist()
    if args.points is not None:
        from crowdvlm.pointing.overlay import draw_points

        draw_points(image, args.points / f"{Path(image).stem}.png", points)
    return points
