"""Console logging for every command, set up in one place: one format, the chatty libraries quietened, and the
HTTP stack's records (URLs, headers: credentials) dropped even at debug level."""

from __future__ import annotations

import logging
import sys

__all__ = ["DATE_FORMAT", "FORMAT", "setup_logging"]

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
DATE_FORMAT = "%H:%M:%S"
# Libraries whose INFO/DEBUG records say nothing a crowdvlm user needs (matplotlib is chatty at debug level).
_QUIET = ("matplotlib", "PIL", "urllib3", "uvicorn.access")


def setup_logging(level: int = logging.INFO, *, verbose: bool = False) -> None:
    """Log to stderr at ``level`` (DEBUG with ``verbose``); a no-op for handlers already installed."""
    from crowdvlm.evaluate.backends.credentials import install_http_log_filter

    logging.basicConfig(
        level=logging.DEBUG if verbose else level, format=FORMAT, datefmt=DATE_FORMAT, stream=sys.stderr
    )
    for name in _QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
    install_http_log_filter()
