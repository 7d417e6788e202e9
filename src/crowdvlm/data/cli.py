"""`crowdvlm data convert|fetch|synth|stats|show`: datasets to manifests, images of URL-based sets, synthetic
data, and a look at both."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from crowdvlm.data.convert import FORMATS
from crowdvlm.data.synth_styles import STYLES
from crowdvlm.errors import EXIT_FAILED, UsageError


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH, e.g. 224x224, got {text!r}") from None
    return w, h


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crowdvlm data", description="Datasets to manifests; synthetic data."
    )
    sub = parser.add_subparsers(dest="action", required=True, metavar="action")

    conv = sub.add_parser("convert", help="convert a dataset in its native format to a JSONL manifest")
    conv.add_argument("--format", required=True, choices=list(FORMATS), help="the dataset's native format")
    conv.add_argument(
        "--root", required=True, help="dataset folder (for --format crowdvlm: the JSON/JSONL/YAML file)"
    )
    conv.add_argument("--split", help="convert one split only (default: all; names depend on the format)")
    conv.add_argument("--out", required=True, help="manifest to write (.jsonl)")
    conv.add_argument(
        "--skip-bad",
        action="store_true",
        help="leave bad records out, list them in <out stem>.skipped.tsv (default: stop at the first)",
    )
    conv.add_argument(
        "--keep-outside",
        action="store_true",
        help="ucf-qnrf, crowdvlm: keep annotated points outside the image (default: drop them, as BL/DM-Count)",
    )
    conv.add_argument("--part", choices=["A", "B"], help="shanghaitech: one part only (default: both)")
    conv.add_argument("--image-root", help="crowdvlm: folder the record image paths are relative to")
    conv.add_argument("--dataset", help="crowdvlm, folder, parquet: dataset name for records that have none")
    conv.add_argument("--seed", type=int, default=42, help="crowdvlm: seed of random:N sampling (default 42)")
    conv.add_argument("--csv", help="folder: the image,count CSV (default <root>/counts.csv)")
    conv.add_argument(
        "--objects", default="objects", help="folder, parquet: what is counted, for the question"
    )
    conv.add_argument("--question", help="folder: the full question instead")
    conv.add_argument(
        "--image-dir",
        help="countbenchqa, parquet: where embedded images are written (default <out stem>_images/); "
        "pixmo-count: the fetched images (default <root>/images); tallyqa: the folder of the COCO and "
        "Visual Genome image folders (default <root>)",
    )
    conv.add_argument("--image-column", default="image", help="parquet: the image column (default image)")
    conv.add_argument("--count-column", default="count", help="parquet: the count column (default count)")
    conv.add_argument("--question-column", help="parquet: a column holding each row's question")
    conv.add_argument("--no-progress", action="store_true", help="no progress bar")

    fe = sub.add_parser(
        "fetch", help="download the images of a URL-based set (pixmo-count), verified against their SHA-256"
    )
    fe.add_argument("--format", required=True, choices=["pixmo-count"], help="the dataset's format")
    fe.add_argument("--root", required=True, help="the dataset folder (its parquet files)")
    fe.add_argument("--split", help="fetch one split only (default: all)")
    fe.add_argument("--out", required=True, help="image folder to fetch into (convert's --image-dir)")
    fe.add_argument("--workers", type=int, default=8, help="downloads at a time (default 8)")
    fe.add_argument("--timeout", type=float, default=30.0, help="seconds per download attempt (default 30)")
    fe.add_argument("--retries", type=int, default=2, help="retries of a failed download (default 2)")
    fe.add_argument("--no-progress", action="store_true", help="no progress bar")

    syn = sub.add_parser("synth", help="generate synthetic counting images with exact counts and points")
    syn.add_argument("--out", required=True, help="output folder (images/ and manifest.jsonl)")
    syn.add_argument("--n", type=int, required=True, help="number of images")
    syn.add_argument(
        "--style",
        default="dots",
        help=f"style, or several joined by commas (one drawn per image): {', '.join(STYLES)}",
    )
    syn.add_argument("--min-count", type=int, default=0, help="smallest count (default 0)")
    syn.add_argument("--max-count", type=int, default=20, help="largest count (default 20)")
    syn.add_argument("--size", type=_size, default=(224, 224), help="WxH in pixels (default 224x224)")
    syn.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    syn.add_argument("--split", default="train", help="the records' split field (default train)")
    syn.add_argument(
        "--image-format",
        choices=["jpg", "png"],
        default="jpg",
        help="jpg (quality 95, fast; default) or png (lossless)",
    )
    syn.add_argument("--no-progress", action="store_true", help="no progress bar")

    st = sub.add_parser("stats", help="count histogram, per-dataset table and image sizes of manifests")
    st.add_argument("manifests", nargs="+", help="manifest files")
    st.add_argument("--plot", help="save a count histogram here (.png)")
    st.add_argument("--json", action="store_true", help="print the numbers as JSON")

    sh = sub.add_parser("show", help="draw a grid of images with their points and counts")
    sh.add_argument("manifest", help="manifest file")
    sh.add_argument("--n", type=int, default=8, help="images in the grid (default 8)")
    sh.add_argument("--out", required=True, help="grid image to write (.png)")
    sh.add_argument("--seed", type=int, default=0, help="which images (random sample; default 0)")
    sh.add_argument("--first", action="store_true", help="show the first N images instead of a random sample")
    return parser


def _convert(args) -> int:
    from crowdvlm.data.convert import convert

    options = {
        "shanghaitech": {"parts": (args.part,)} if args.part else {},
        "ucf-qnrf": {"keep_outside": args.keep_outside},
        "crowdvlm": {
            "image_root": args.image_root,
            "dataset": args.dataset,
            "seed": args.seed,
            "keep_outside": args.keep_outside,
        },
        "countbenchqa": {"image_dir": args.image_dir},
        "pixmo-count": {"image_dir": args.image_dir},
        "tallyqa": {"image_dir": args.image_dir},
        "parquet": {
            "image_dir": args.image_dir,
            "image_column": args.image_column,
            "count_column": args.count_column,
            "question_column": args.question_column,
            "objects": args.objects,
            "dataset": args.dataset,
        },
        "folder": {
            "csv_path": args.csv,
            "objects": args.objects,
            "question": args.question,
            "dataset": args.dataset,
        },
    }.get(args.format, {})
    result = convert(
        args.format,
        args.root,
        args.out,
        split=args.split,
        skip_bad=args.skip_bad,
        progress=not args.no_progress,
        **options,
    )
    print(f"wrote {result.n_records} records to {result.manifest}")
    if result.dropped_outside:
        print(
            f"dropped {result.dropped_outside} annotated points outside their image (--keep-outside keeps them)",
            file=sys.stderr,
        )
    if result.report:
        print(f"{result.skips.summary()}; the list is in {result.report}", file=sys.stderr)
    return 0


def main(argv: list[str]) -> int:
    """Run one ``crowdvlm data`` action; bad input raises ``UsageError`` (exit 2), printed by ``crowdvlm.cli``."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return _run(args)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, ValueError) as err:
        if isinstance(err, UsageError):
            raise
        raise UsageError(str(err)) from err  # a missing file, a folder for a file, a bad option value


def _fetch(args) -> int:
    from crowdvlm.data.fetch import fetch_images
    from crowdvlm.data.pixmo_count import pixmo_fetch_items

    items = pixmo_fetch_items(args.root, args.split)
    result = fetch_images(
        items,
        args.out,
        workers=args.workers,
        timeout=args.timeout,
        retries=args.retries,
        progress=not args.no_progress,
    )
    print(f"{len(items)} rows, {sum(result.counts.values())} images: {result.summary()} -> {result.out}")
    if result.report:
        print(f"the images not fetched are listed in {result.report}", file=sys.stderr)
    if result.counts["failed"]:
        print("some downloads failed: run the same command again to retry them", file=sys.stderr)
        return EXIT_FAILED
    return 0


def _run(args) -> int:
    if args.action == "convert":
        return _convert(args)
    if args.action == "fetch":
        return _fetch(args)
    if args.action == "synth":
        from crowdvlm.data.synth import generate

        styles = [s.strip() for s in args.style.split(",") if s.strip()]
        path = generate(
            args.out,
            args.n,
            styles if len(styles) > 1 else styles[0],
            args.min_count,
            args.max_count,
            args.size,
            args.seed,
            split=args.split,
            image_format=args.image_format,
            progress=not args.no_progress,
        )
        print(f"wrote {args.n} images and {path}")
        return 0
    if args.action == "stats":
        from crowdvlm.data.stats import format_stats, plot_count_histogram, stats_of

        records, stats = stats_of(args.manifests)
        print(json.dumps(stats, indent=2) if args.json else format_stats(stats))
        if args.plot:
            print(f"histogram: {plot_count_histogram(records, args.plot)}")
        return 0
    from crowdvlm.data.manifest import read_manifest
    from crowdvlm.data.show import show_grid

    out = show_grid(read_manifest(args.manifest), args.out, n=args.n, seed=None if args.first else args.seed)
    print(f"grid: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
