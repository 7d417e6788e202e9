"""``crowdvlm data fetch``: download the images of a URL-based set (PixMo-Count), checked against their SHA-256.

Each image is saved as ``<out>/<sha256>.<ext>`` (the extension from the image's own format), the name the
readers look it up by, so one image listed twice is fetched once. The download is:

* **resumable**: an image already in ``out`` whose bytes match its hash is not fetched again; a download
  goes to ``<name>.part`` and is renamed only once complete and verified, so an interrupted run leaves no
  half image;
* **bounded**: ``workers`` downloads at a time; each attempt has a total time limit (``timeout`` seconds,
  for a server that trickles bytes too) and a size limit; transient failures (timeouts, 5xx, 429, resets)
  are retried ``retries`` times with a short backoff;
* **counted**: an image the server no longer has (404, 410) is *gone*, one whose bytes no longer match the
  published hash is *changed* (not kept), one still failing after the retries is *failed*. Every such image
  is listed in ``<out>/fetch_report.tsv`` (status, reason, hash, url); a rerun retries the failed ones.
"""

from __future__ import annotations

import hashlib
import io
import logging
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from crowdvlm.atomic import atomic_write_text

__all__ = ["FetchItem", "FetchResult", "fetch_images", "fetched_image"]

logger = logging.getLogger(__name__)

REPORT_FILE = "fetch_report.tsv"
MAX_BYTES = 64 * 1024 * 1024  # no counting-benchmark image comes near this; a runaway response stops here
_GONE = {404, 410}
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class FetchItem:
    """One image to fetch: where from and the SHA-256 (hex) its bytes must have."""

    url: str
    sha256: str


@dataclass
class FetchResult:
    """What a fetch did: ``counts`` per status (present, downloaded, gone, changed, failed) and the problems."""

    out: Path
    counts: Counter = field(default_factory=Counter)
    problems: list[tuple[str, str, FetchItem]] = field(default_factory=list)  # (status, reason, item)
    report: Path | None = None

    def summary(self) -> str:
        order = ("present", "downloaded", "gone", "changed", "failed")
        return ", ".join(f"{self.counts[k]} {k}" for k in order)


def fetched_image(folder: Path, sha256: str) -> Path | None:
    """The image fetched for ``sha256`` in ``folder`` (any extension), or None."""
    found = [p for p in folder.glob(f"{sha256.lower()}.*") if p.suffix != ".part"]
    return found[0] if found else None


def _extension(data: bytes) -> str:
    from PIL import Image, UnidentifiedImageError

    from crowdvlm.data.tables import image_extension

    try:
        with Image.open(io.BytesIO(data)) as img:
            return image_extension(img.format)
    except (UnidentifiedImageError, OSError):
        return ".img"  # the hash matched: the publisher's bytes, kept; the reader reports an unreadable image


class _Gone(Exception):
    pass


def _download(url: str, timeout: float) -> bytes:
    """The body of ``url`` within ``timeout`` seconds in all; raises ``_Gone`` for 404/410."""
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(url, headers={"User-Agent": "crowdvlm-fetch"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            chunks, size = [], 0
            while chunk := response.read(_CHUNK):
                size += len(chunk)
                if size > MAX_BYTES:
                    raise OSError(f"larger than {MAX_BYTES // 2**20} MiB")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"not complete after {timeout:g} s")
                chunks.append(chunk)
            return b"".join(chunks)
    except urllib.error.HTTPError as err:
        if err.code in _GONE:
            raise _Gone(f"HTTP {err.code}") from None
        raise


def _fetch_one(item: FetchItem, out: Path, timeout: float, retries: int) -> tuple[str, str]:
    """``(status, reason)`` of one image; never raises for a network problem."""
    sha = item.sha256.lower()
    existing = fetched_image(out, sha)
    if existing is not None:
        if hashlib.sha256(existing.read_bytes()).hexdigest() == sha:
            return "present", ""
        existing.unlink()  # a file of an earlier, different download: fetch it again
    reason = ""
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(min(0.25 * 2**attempt, 4.0))
        try:
            data = _download(item.url, timeout)
        except _Gone as err:
            return "gone", str(err)
        except urllib.error.HTTPError as err:
            reason = f"HTTP {err.code}"
            if err.code < 500 and err.code != 429:
                return "failed", reason  # 401, 403...: retrying will not help
            continue
        except (urllib.error.URLError, TimeoutError, OSError, ValueError) as err:
            reason = f"{type(err).__name__}: {getattr(err, 'reason', err)}"
            continue
        digest = hashlib.sha256(data).hexdigest()
        if digest != sha:
            return "changed", f"sha256 {digest}"
        target = out / f"{sha}{_extension(data)}"
        part = target.with_name(target.name + ".part")
        part.write_bytes(data)
        part.replace(target)
        return "downloaded", ""
    return "failed", f"{reason} (after {retries + 1} attempts)"


def fetch_images(
    items: Sequence[FetchItem],
    out: str | Path,
    *,
    workers: int = 8,
    timeout: float = 30.0,
    retries: int = 2,
    progress: bool = True,
) -> FetchResult:
    """Fetch every image of ``items`` into ``out`` (see the module docstring); returns the counts.

    Raises:
        ValueError: a bad option (workers < 1, timeout <= 0, retries < 0) or a hash that is not SHA-256 hex.
    """
    if workers < 1 or timeout <= 0 or retries < 0:
        raise ValueError(
            f"fetch: workers >= 1, timeout > 0, retries >= 0; got {workers}, {timeout}, {retries}"
        )
    unique = list({item.sha256.lower(): item for item in items}.values())
    for item in unique:
        if len(item.sha256) != 64 or any(c not in "0123456789abcdef" for c in item.sha256.lower()):
            raise ValueError(f"fetch: {item.url}: {item.sha256!r} is not a SHA-256 in hex")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result = FetchResult(out)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        outcomes = pool.map(lambda it: (it, _fetch_one(it, out, timeout, retries)), unique)
        for item, (status, reason) in tqdm(
            outcomes, total=len(unique), desc="fetch", unit="img", disable=not progress, leave=False
        ):
            result.counts[status] += 1
            if status in ("gone", "changed", "failed"):
                result.problems.append((status, reason, item))
    report = out / REPORT_FILE
    if result.problems:
        lines = ["status\treason\tsha256\turl"]
        lines += [
            f"{s}\t{r}\t{it.sha256}\t{it.url}" for s, r, it in sorted(result.problems, key=lambda p: p[0])
        ]
        atomic_write_text(report, "\n".join(lines) + "\n")
        result.report = report
    elif report.exists():
        report.unlink()  # a rerun that fetched everything: no stale list of problems
    logger.info("fetch: %s into %s", result.summary(), out)
    return result
