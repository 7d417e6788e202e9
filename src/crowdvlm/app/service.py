"""Counting for the app: one loaded backend, the eval prompt and parser, results as rows and CSV.

No gradio import here: the page (:mod:`crowdvlm.app.ui`) is a thin layer over :class:`CountingService`, and
the tests drive this module directly. Inference is exactly ``crowdvlm predict``'s: the same
:func:`crowdvlm.prompts.build_prompt`, the backend's ``prepare``/``generate`` (the ones ``crowdvlm eval``
uses) and :func:`crowdvlm.parsing.parse_count`.
"""

from __future__ import annotations

import csv
import io
import itertools
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from crowdvlm.app.uploads import Limits, UploadedImage, UploadRefused, open_checked_image, without_paths
from crowdvlm.evaluate.backends.base import EvalItem
from crowdvlm.evaluate.cli import thinking_of
from crowdvlm.evaluate.predictions import storable_text
from crowdvlm.parsing import parse_count, parse_points
from crowdvlm.prompts import build_prompt

__all__ = ["CSV_COLUMNS", "CountingService", "Prediction", "PointsReader", "frame_points_reader", "to_csv"]

logger = logging.getLogger(__name__)

MAX_QUESTION_CHARS = 500
CSV_COLUMNS = ("image", "count", "error", "answer")
# A cell a spreadsheet would run as a formula starts with one of these (OWASP's list for CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# Results up to this many pixels are served as PNG (exact); larger ones as JPEG (a re-encoded 25-megapixel
# photo is ~80 MB as PNG, a few MB as JPEG).
LOSSLESS_PIXELS = 1_000_000
JPEG_QUALITY = 90

# (answer text, (width, height) of the upright image) -> points (x, y) in that image's pixels.
PointsReader = Callable[[str, tuple[int, int]], list[tuple[float, float]]]


def frame_points_reader(convention: str, rule=None) -> PointsReader:
    """Read an answer's points as ``crowdvlm predict --output points`` does, in the image's own pixels.

    Args:
        convention: the frame the model points in (``--point-frame``: resized, relative-1000, original).
        rule: the processor's resize rule, for ``resized`` (:func:`crowdvlm.evaluate.point_options.point_frame_rule`).
    """
    from crowdvlm.pointing.frame import Frame

    def read(text: str, size: tuple[int, int]) -> list[tuple[float, float]]:
        frame = Frame.make(convention, *size, rule)
        points = frame.from_frame(parse_points(text, (frame.width, frame.height)).points)
        return [(float(x), float(y)) for x, y in points.tolist()]

    return read


@dataclass
class Prediction:
    """The outcome for one image: a count (None if the answer had none) or the error that prevented one.

    ``points`` are in the image's pixels (empty unless the answer gave points and a reader is set);
    ``size`` is the image's (width, height) once it decoded.
    """

    image: str
    count: int | None = None
    answer: str = ""
    reasoning: str | None = None
    points: list[tuple[float, float]] = field(default_factory=list)
    error: str | None = None
    size: tuple[int, int] | None = None

    def row(self) -> list:
        """The image's row of the results table and the CSV (:data:`CSV_COLUMNS`)."""
        return [self.image, "" if self.count is None else self.count, self.error or "", self.answer]


def spreadsheet_safe(cell):
    """A text cell that a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``, tab, CR first),
    prefixed with ``'`` so it shows as text; other cells as they are. A carriage return inside a text cell
    becomes a newline (the csv module quotes a cell with a newline, not one with a bare CR, which would
    split the row).

    >>> spreadsheet_safe('=HYPERLINK("http://x")'), spreadsheet_safe("a.png"), spreadsheet_safe(3)
    ('\'=HYPERLINK("http://x")', 'a.png', 3)
    """
    if not isinstance(cell, str):
        return cell
    safe = "'" + cell if cell.startswith(_FORMULA_STARTS) else cell
    return safe.replace("\r\n", "\n").replace("\r", "\n")


def to_csv(predictions: list[Prediction]) -> str:
    """The predictions as CSV text with a header row (:data:`CSV_COLUMNS`); cells via :func:`spreadsheet_safe`.

    >>> print(to_csv([Prediction("a.png", 3, "<answer>3</answer>"), Prediction("b.png", error="corrupt")]).strip())
    image,count,error,answer
    a.png,3,,<answer>3</answer>
    b.png,,corrupt,
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for prediction in predictions:
        writer.writerow([spreadsheet_safe(cell) for cell in prediction.row()])
    return buffer.getvalue()


def check_question(question: str | None) -> str:
    """The question, stripped; refused when empty or longer than :data:`MAX_QUESTION_CHARS`."""
    question = (question or "").strip()
    if not question:
        raise UploadRefused("refused: the question is empty; ask e.g. 'How many people are in the image?'")
    if len(question) > MAX_QUESTION_CHARS:
        raise UploadRefused(
            f"refused: the question has {len(question)} characters; the limit is {MAX_QUESTION_CHARS}"
        )
    return question


class CountingService:
    """A loaded backend that counts uploaded images, one request at a time.

    Args:
        backend: an inference backend (:mod:`crowdvlm.evaluate.backends`), loaded once.
        template: prompt template (as ``crowdvlm predict --prompt``).
        output: output instruction (as ``crowdvlm predict --output``).
        strict_parse: read answers with the paper's strict rule.
        batch_size: images per ``generate`` call in a batch request.
        limits: bounds on one request.
        points_reader: how to read points from an answer (:func:`frame_points_reader`); None: no points.
        work_dir: where request files (zip members, CSVs) are written; default a new temporary folder.
    """

    def __init__(
        self,
        backend,
        *,
        template: str = "eval",
        output: str = "think",
        strict_parse: bool = False,
        batch_size: int = 8,
        limits: Limits | None = None,
        points_reader: PointsReader | None = None,
        work_dir: Path | None = None,
    ):
        self.backend = backend
        self.template = template
        self.output = output
        self.strict_parse = strict_parse
        self.batch_size = max(1, batch_size)
        self.limits = limits or Limits()
        self.points_reader = points_reader
        self._tmp = None if work_dir is not None else tempfile.TemporaryDirectory(prefix="crowdvlm-app-")
        self.work_dir = Path(work_dir if work_dir is not None else self._tmp.name)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        # Gradio's queue already runs one model request at a time; the lock also covers direct callers.
        self._lock = threading.Lock()
        self._ids = itertools.count(1)  # names of request folders and CSVs

    def close(self) -> None:
        """Release the backend's resources and the request files."""
        close = getattr(self.backend, "close", None)
        if close is not None:
            close()
        if self._tmp is not None:
            self._tmp.cleanup()

    def count(
        self, images: list[UploadedImage], question: str | None, *, keep_images: bool = False
    ) -> tuple[list[Prediction], list[Image.Image | None], float]:
        """Count the objects in each image.

        Each image is checked (pixels, decodability) first; one that fails gets its error and the others are
        still counted. Returns the predictions, the decoded RGB images when ``keep_images`` (None where
        refused; a batch request keeps none, so it never holds many decoded images at once) and the seconds
        the whole request took.

        Raises:
            UploadRefused: the question is empty or too long.
        """
        prompt = build_prompt(check_question(question), template=self.template, output=self.output)
        start = time.perf_counter()
        with self._lock:
            request_dir = self.new_file("request", "")
            request_dir.mkdir(parents=True)
            try:
                predictions, decoded = self._count(images, prompt, request_dir, keep_images)
            finally:  # zip members are needed only while the model reads them
                shutil.rmtree(request_dir, ignore_errors=True)
        for prediction in predictions:  # the page shows errors: never a server path
            prediction.error = prediction.error and without_paths(prediction.error)
        return predictions, decoded, time.perf_counter() - start

    def _count(
        self, images: list[UploadedImage], prompt: str, request_dir: Path, keep_images: bool
    ) -> tuple[list[Prediction], list[Image.Image | None]]:
        """One request, under the lock; its files (zip members) go under ``request_dir``."""
        predictions = [Prediction(image.name) for image in images]
        decoded: list[Image.Image | None] = []
        items: list[tuple[int, EvalItem]] = []
        for index, image in enumerate(images):
            try:
                source = image.data if image.data is not None else image.path
                rgb = open_checked_image(source, image.name, self.limits)
            except UploadRefused as err:
                decoded.append(None)
                predictions[index].error = str(err)
                continue
            predictions[index].size = rgb.size
            decoded.append(rgb if keep_images else None)
            path = image.path
            if path is None:  # a zip member: written under a name of ours, never the member's own
                path = request_dir / f"{index:04d}.img"
                path.write_bytes(image.data)
            items.append((index, EvalItem(image.name, "app", path, prompt)))
        for start_at in range(0, len(items), self.batch_size):
            self._run_batch(items[start_at : start_at + self.batch_size], predictions)
        return predictions, decoded

    def _run_batch(
        self,
        batch: list[tuple[int, EvalItem]],
        predictions: list[Prediction],
    ) -> None:
        prepared = self.backend.prepare([item for _, item in batch])
        answers = iter(self.backend.generate(prepared) if prepared.loaded else [])
        for (index, _), load_error in zip(batch, prepared.errors, strict=True):
            answer = None if load_error else next(answers)
            prediction = predictions[index]
            prediction.error = load_error or answer.error
            if prediction.error:
                continue
            prediction.answer = storable_text(answer.text)  # as `crowdvlm predict` prints it
            prediction.count = parse_count(prediction.answer, strict=self.strict_parse)
            prediction.reasoning = thinking_of(prediction.answer)
            if self.points_reader is not None:
                prediction.points = self.points_reader(prediction.answer, prediction.size)

    def new_file(self, stem: str, suffix: str) -> Path:
        """A new path in the work folder, for a file the page serves (a CSV, an image with its points)."""
        return self.work_dir / f"{stem}-{next(self._ids):06d}{suffix}"

    def result_file(self, image: Image.Image, stem: str = "result") -> Path:
        """Save an image the page shows: PNG up to :data:`LOSSLESS_PIXELS`, a JPEG above (compact)."""
        if image.width * image.height <= LOSSLESS_PIXELS:
            path = self.new_file(stem, ".png")
            image.save(path)
        else:
            path = self.new_file(stem, ".jpg")
            image.convert("RGB").save(path, quality=JPEG_QUALITY)
        return path

    def result_suffix(self, size: tuple[int, int]) -> str:
        """The suffix :meth:`result_file` gives an image of ``size``."""
        return ".png" if size[0] * size[1] <= LOSSLESS_PIXELS else ".jpg"

    def write_csv(self, predictions: list[Prediction]) -> Path:
        """Write the predictions as CSV in the work folder and return its path (for the download button)."""
        path = self.new_file("counts", ".csv")
        path.write_text(to_csv(predictions), encoding="utf-8")
        return path
