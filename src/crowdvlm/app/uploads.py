"""What the app accepts from a request, checked before any image is decoded (no gradio import here).

The server never opens a path or URL that a request names: it opens only files that the page uploaded
(Gradio writes those under its own cache folder, and :func:`check_upload_path` refuses anything outside
the folders it is given) and the members of an uploaded zip, which are read into memory and never extracted
under their own names. Every refusal is an :class:`UploadRefused` whose message is shown on the page as is.
"""

from __future__ import annotations

import io
import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from PIL import Image, UnidentifiedImageError

__all__ = [
    "Limits",
    "UploadRefused",
    "UploadedImage",
    "check_upload_path",
    "expand_uploads",
    "open_checked_image",
    "without_paths",
]

MB = 1024 * 1024

# An absolute path of two or more parts (POSIX or Windows), not inside a word, a URL or a relative name.
_SERVER_PATH = re.compile(r"(?<![\w.:/\\])(?:[A-Za-z]:)?(?:[\\/][^\\/\s'\"<>|:]+)*[\\/]([^\\/\s'\"<>|:]+)")


def without_paths(text: str) -> str:
    """``text`` with every absolute path cut to its last part: what the page may show of a server's files.

    >>> without_paths("cannot load image /tmp/gradio/4f2a/crowd.png: truncated")
    'cannot load image crowd.png: truncated'
    """
    return _SERVER_PATH.sub(lambda m: m[1] if m[0].count("/") + m[0].count("\\") > 1 else m[0], text)


class UploadRefused(ValueError):
    """A request the app refuses; the message says what was refused and what the limit or rule is."""


@dataclass(frozen=True)
class Limits:
    """Bounds on one request. Defaults suit a demo on a CPU; ``crowdvlm app`` has an option for each.

    Attributes:
        max_upload_bytes: largest uploaded file (an image or a zip).
        max_pixels: largest image area (width x height), checked from the header before decoding.
        max_images: most images in one batch request (files plus zip members).
        max_unzipped_bytes: largest total uncompressed size of the members of the zips of one request.
    """

    max_upload_bytes: int = 10 * MB
    max_pixels: int = 25_000_000
    max_images: int = 32
    max_unzipped_bytes: int = 100 * MB

    def __post_init__(self):
        for name in ("max_upload_bytes", "max_pixels", "max_images", "max_unzipped_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"limit {name} must be >= 1, got {getattr(self, name)}")


@dataclass
class UploadedImage:
    """One image of a request: its display name and its bytes (or a path to an uploaded file)."""

    name: str
    path: Path | None = None
    data: bytes | None = None


def _mb(n: int) -> str:
    """A byte count for a message: ``"12.5 MB"``, or ``"70 KB"`` below a megabyte."""
    return f"{n / MB:.1f} MB" if n >= MB else f"{n / 1024:.0f} KB"


def check_upload_path(path: str | Path, allowed_roots: list[Path], limits: Limits) -> Path:
    """Return ``path`` resolved, if it is an uploaded file inside ``allowed_roots`` within the size limit.

    Raises:
        UploadRefused: the path is outside every allowed folder, is not a regular file, or is too large.
    """
    resolved = Path(path).resolve()
    roots = [Path(root).resolve() for root in allowed_roots]
    if not any(resolved.is_relative_to(root) for root in roots):
        raise UploadRefused("refused: the server opens only files uploaded through this page")
    if not resolved.is_file():
        raise UploadRefused(f"refused: {resolved.name} is not an uploaded file")
    size = resolved.stat().st_size
    if size > limits.max_upload_bytes:
        raise UploadRefused(
            f"refused: {resolved.name} is {_mb(size)}; the limit is {_mb(limits.max_upload_bytes)} per file"
        )
    return resolved


def open_checked_image(source: Path | bytes, name: str, limits: Limits) -> Image.Image:
    """Decode an image (upright, RGB) after checking its area from the header (an oversized one is not decoded).

    Raises:
        UploadRefused: not an image, too many pixels, or corrupt / truncated.
    """
    from crowdvlm.data.images import (
        open_image,
    )  # (numpy) here, not at import: `crowdvlm app --help` stays fast

    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        with Image.open(stream) as img:
            width, height = img.size
            if width * height > limits.max_pixels:
                raise UploadRefused(
                    f"refused: {name} is {width}x{height} = {width * height / 1e6:.1f} megapixels; "
                    f"the limit is {limits.max_pixels / 1e6:.1f} megapixels"
                )
        # Decoded by the one rule every model sees (crowdvlm.data.images: EXIF orientation applied, RGB).
        return open_image(io.BytesIO(source) if isinstance(source, bytes) else source)
    except UploadRefused:
        raise
    except UnidentifiedImageError:
        raise UploadRefused(f"refused: {name} is not an image file (PNG, JPEG, WebP, ...)") from None
    except Image.DecompressionBombError:  # PIL's own bound (far above ours) fired while reading the header
        raise UploadRefused(
            f"refused: {name} has more pixels than the limit of {limits.max_pixels / 1e6:.1f} megapixels"
        ) from None
    except (OSError, SyntaxError, ValueError) as err:
        # PIL reports a truncated or damaged file as OSError (sometimes SyntaxError or ValueError).
        raise UploadRefused(f"refused: {name} is corrupt or truncated ({err})") from None


def _is_zip(path: Path) -> bool:
    return path.suffix.lower() == ".zip" or zipfile.is_zipfile(path)


def _member_problem(info: zipfile.ZipInfo) -> str | None:
    """Why a zip member is refused outright (an unsafe name or a nested archive), or None."""
    name = info.filename
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or ".." in parts or (parts and parts[0].endswith(":")):
        return f"member {name!r} has a path that leaves the archive"
    if name.lower().endswith((".zip", ".jar", ".tar", ".gz", ".tgz", ".7z", ".rar")):
        return f"member {name!r} is an archive; nested archives are not accepted"
    return None


def _read_zip(path: Path, display: str, limits: Limits, budget: list[int]) -> list[UploadedImage]:
    """The image members of a zip, read into memory; ``budget`` holds the uncompressed bytes left."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise UploadRefused(f"refused: {display} is not a readable zip archive ({err})") from None
    images: list[UploadedImage] = []
    with archive:
        members = [info for info in archive.infolist() if not info.is_dir()]
        for info in members:
            problem = _member_problem(info)
            if problem:
                raise UploadRefused(f"refused: {display}: {problem}")
        for info in members:
            if info.filename.startswith("__MACOSX/"):
                continue  # resource forks macOS adds to every zip it makes: not images of the user's
            if info.file_size > budget[0]:
                raise UploadRefused(
                    f"refused: {display} unpacks to more than {_mb(limits.max_unzipped_bytes)} "
                    "(the limit on uncompressed zip contents per request)"
                )
            # Read at most one byte past the budget and check what came out, so no header can make us
            # inflate more than that (zipfile also stops at the header's size and then fails the CRC).
            try:
                with archive.open(info) as member:
                    data = member.read(budget[0] + 1)
            except (
                zipfile.BadZipFile,
                zlib.error,
                EOFError,
                OSError,
                RuntimeError,
                NotImplementedError,
            ) as err:
                # RuntimeError: encrypted member; NotImplementedError: a compression zipfile lacks.
                raise UploadRefused(
                    f"refused: {display}: member {info.filename!r} cannot be read ({err})"
                ) from None
            if len(data) > budget[0]:
                raise UploadRefused(
                    f"refused: {display} unpacks to more than {_mb(limits.max_unzipped_bytes)} "
                    "(the limit on uncompressed zip contents per request)"
                )
            budget[0] -= len(data)
            if data[:4] == b"PK\x03\x04":
                raise UploadRefused(
                    f"refused: {display}: member {info.filename!r} is a zip; nested archives are not accepted"
                )
            images.append(UploadedImage(name=f"{display}/{info.filename}", data=data))
    return images


def expand_uploads(
    paths: list[str | Path], allowed_roots: list[Path], limits: Limits, names: list[str] | None = None
) -> list[UploadedImage]:
    """The images of a batch request: uploaded image files, and the members of uploaded zips.

    Args:
        paths: the uploaded files (Gradio's temporary copies).
        allowed_roots: folders uploads may live in (see :func:`check_upload_path`).
        limits: the request's bounds.
        names: display names of the files (their names on the user's machine); default the file names.

    Raises:
        UploadRefused: a file is outside the upload folders or too large, a zip is unsafe or too large
            unpacked, or the request holds more than ``limits.max_images`` images.
    """
    if not paths:
        raise UploadRefused("nothing uploaded: add image files or a zip of images")
    names = names or [Path(p).name for p in paths]
    budget = [limits.max_unzipped_bytes]
    images: list[UploadedImage] = []
    for path, name in zip(paths, names, strict=True):
        checked = check_upload_path(path, allowed_roots, limits)
        if _is_zip(checked):
            images.extend(_read_zip(checked, name, limits, budget))
        else:
            images.append(UploadedImage(name=name, path=checked))
        if len(images) > limits.max_images:
            raise UploadRefused(
                f"refused: more than {limits.max_images} images in one request; "
                f"the limit is {limits.max_images} (files plus zip members)"
            )
    if not images:
        raise UploadRefused("nothing to count: the upload holds no image")
    return images
