"""`crowdvlm app`: serve a counting model as a web page (Gradio), on 127.0.0.1 unless told otherwise.

Gradio and the model are imported only after the arguments parse, so `crowdvlm app --help` is instant;
every option is checked before the model loads. While serving, a :class:`crowdvlm.app.cache.CacheJanitor`
bounds gradio's cache and the app's own files by age and total size; SIGTERM stops the server as Ctrl-C does,
removing the app's files.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from crowdvlm.app.uploads import MB, Limits
from crowdvlm.argparsing import CommandParser
from crowdvlm.errors import RunError, UsageError
from crowdvlm.evaluate.cli import DEFAULT_QUESTION, _add_backend_options, _open_backend
from crowdvlm.evaluate.point_options import add_point_options, point_frame_rule
from crowdvlm.logs import setup_logging

logger = logging.getLogger(__name__)

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="crowdvlm app",
        description="A web page to try a counting model: one image -> count, reasoning, points and time; "
        "several images or a zip -> a table and a CSV. Needs the app extra: pip install 'crowdvlm[app]'.",
    )
    _add_backend_options(parser)  # the same model options as `crowdvlm eval` / `predict`
    parser.add_argument(
        "--question",
        default=DEFAULT_QUESTION,
        help=f"the page's first question (default: {DEFAULT_QUESTION!r})",
    )
    parser.add_argument(
        "--strict-parse", action="store_true", help="read answers with the paper's strict rule"
    )
    add_point_options(parser)  # with --output-format points the answer's points are drawn on the image
    server = parser.add_argument_group("server")
    server.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default: 127.0.0.1, this machine only; 0.0.0.0 exposes the model to the network)",
    )
    server.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    server.add_argument(
        "--cache-max-age-min",
        type=float,
        default=60.0,
        help="uploads and results older than this are deleted from gradio's cache and the app's files "
        "(default: 60 minutes)",
    )
    server.add_argument(
        "--cache-max-mb",
        type=float,
        default=2048.0,
        help="the most those files may take together; the oldest go first (default: 2048 MB)",
    )
    server.add_argument(
        "--queue-size", type=int, default=16, help="requests waiting at most; more are refused (default: 16)"
    )
    limits = parser.add_argument_group("limits on one request")
    defaults = Limits()
    limits.add_argument(
        "--max-upload-mb",
        type=float,
        default=defaults.max_upload_bytes / MB,
        help=f"largest uploaded file (default: {defaults.max_upload_bytes / MB:g})",
    )
    limits.add_argument(
        "--max-pixels-per-image",
        type=int,
        default=defaults.max_pixels,
        help=f"largest image area in pixels (default: {defaults.max_pixels})",
    )
    limits.add_argument(
        "--max-images",
        type=int,
        default=defaults.max_images,
        help=f"most images in one batch request (default: {defaults.max_images})",
    )
    limits.add_argument(
        "--max-unzipped-mb",
        type=float,
        default=defaults.max_unzipped_bytes / MB,
        help=f"largest uncompressed zip contents per request (default: {defaults.max_unzipped_bytes / MB:g})",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def main(argv: list[str]) -> int:
    """`crowdvlm app`: load the model once, serve the page until Ctrl-C."""
    args = build_parser().parse_args(argv)
    setup_logging(verbose=args.verbose)
    try:
        limits = Limits(
            max_upload_bytes=int(args.max_upload_mb * MB),
            max_pixels=args.max_pixels_per_image,
            max_images=args.max_images,
            max_unzipped_bytes=int(args.max_unzipped_mb * MB),
        )
    except ValueError as err:
        raise UsageError(str(err)) from None
    if args.queue_size < 1:
        raise UsageError(f"--queue-size must be >= 1, got {args.queue_size}")
    if not 1 <= args.port <= 65535:
        raise UsageError(f"--port must be 1 to 65535, got {args.port}")
    if not args.cache_max_age_min > 0:
        raise UsageError(f"--cache-max-age-min must be > 0, got {args.cache_max_age_min:g}")
    if not args.cache_max_mb > 0:
        raise UsageError(f"--cache-max-mb must be > 0, got {args.cache_max_mb:g}")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from a local demo
    try:
        from crowdvlm.app.service import CountingService
        from crowdvlm.app.ui import PAGE_CSS, build_page
    except ImportError as err:
        raise UsageError(
            f"the app needs gradio ({err}): `make setup`, or pip install 'crowdvlm[app]' "
            "(it installs gradio>=6.31,<7)"
        ) from None
    from crowdvlm.app.cache import CacheJanitor
    from crowdvlm.app.service import frame_points_reader

    signal.signal(signal.SIGTERM, _stop_on_sigterm)  # the `finally`s below then run, as for Ctrl-C
    backend = _open_backend(args)  # as `crowdvlm predict` opens it (bad model: one-line UsageError)
    points_reader = None
    if args.output_format == "points":
        points_reader = frame_points_reader(args.point_frame, point_frame_rule(args, backend))
    service = CountingService(
        backend,
        template=args.prompt_template,
        output=args.output_format,
        strict_parse=args.strict_parse,
        batch_size=args.batch_size,
        limits=limits,
        points_reader=points_reader,
    )
    page = build_page(service, model_name=args.model, question=args.question, queue_size=args.queue_size)
    from gradio.utils import get_upload_folder

    max_age_s = args.cache_max_age_min * 60
    janitor = CacheJanitor(
        [Path(get_upload_folder()), service.work_dir],
        max_age_s=max_age_s,
        max_bytes=int(args.cache_max_mb * MB),
        every_s=min(60.0, max_age_s / 4),
    )
    try:
        _, url, _ = page.launch(
            server_name=args.host,
            server_port=args.port,
            # gradio refuses a larger upload before it reaches the disk, with a message on the page that
            # names this limit; the handlers check it again (check_upload_path) in case it is bypassed.
            max_file_size=limits.max_upload_bytes,
            css=PAGE_CSS,
            prevent_thread_lock=True,
            quiet=True,
            ssr_mode=False,
            share=False,
        )
    except OSError as err:
        service.close()
        raise RunError(f"cannot listen on {args.host}:{args.port}: {err}") from None
    if args.host not in LOOPBACK:
        logger.warning("listening on %s: anyone who can reach this machine can use the model", args.host)
    print(f"crowdvlm app: serving {args.model} at {url} (Ctrl-C to stop)", flush=True)
    janitor.start()
    try:
        threading.Event().wait()  # the server runs in gradio's threads; this one waits for Ctrl-C or SIGTERM
    finally:
        janitor.stop()
        page.close()
        service.close()
    return 0


def _stop_on_sigterm(signum: int, frame) -> None:
    """SIGTERM (a service manager, ``kill``): leave through the ``finally`` blocks, exit status 143."""
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
