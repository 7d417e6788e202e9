"""What every inference backend provides, and the pieces they share (items, image loading).

A backend answers in two steps so that the slow parts can overlap:

1. :meth:`Backend.prepare` loads and preprocesses a batch's images (runs in a background thread, see
   :mod:`crowdvlm.evaluate.prefetch`). An image that cannot be loaded gets an error instead of an input.
2. :meth:`Backend.generate` produces one :class:`Answer` per loaded item (runs in the main thread).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

__all__ = ["Answer", "Backend", "EvalItem", "Prepared", "load_image", "try_load_image"]


@dataclass(frozen=True)
class EvalItem:
    """One image to evaluate.

    Attributes:
        id: unique image id within the run.
        dataset: dataset name (for per-dataset metrics).
        image: path of the image file.
        prompt: the full text prompt (question + output instructions).
        truth: the ground-truth count, or None when unlabelled.
    """

    id: str
    dataset: str
    image: Path
    prompt: str
    truth: int | None = None


@dataclass
class Prepared:
    """A batch after loading: per-item load errors, and the backend's inputs for the loaded items.

    Attributes:
        items: every item of the batch, in order.
        errors: per item, why it could not be loaded, or None.
        payload: backend-specific inputs for the items whose error is None, in the same order.
    """

    items: list[EvalItem]
    errors: list[str | None]
    payload: Any = None

    @property
    def loaded(self) -> list[EvalItem]:
        return [item for item, error in zip(self.items, self.errors, strict=True) if error is None]


@dataclass
class Answer:
    """A model's answer for one loaded item: its text, or the error that prevented one."""

    text: str = ""
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Backend(Protocol):
    """An inference engine: Hugging Face ``generate``, vLLM, or an OpenAI-compatible API."""

    name: str

    def prepare(self, items: list[EvalItem]) -> Prepared:
        """Load and preprocess a batch (thread-safe; called from the prefetch worker)."""
        ...

    def generate(self, prepared: Prepared) -> list[Answer]:
        """Answer each loaded item of ``prepared``, in order (one :class:`Answer` per loaded item)."""
        ...

    def describe(self) -> dict[str, Any]:
        """Settings worth recording in ``run.json`` (never secrets)."""
        ...


def load_image(path: str | Path) -> Image.Image:
    """Open and fully decode an image as RGB, upright (see :mod:`crowdvlm.data.images`).

    Raises:
        OSError: the file is missing, unreadable, truncated or not an image (PIL raises subclasses of it).
        Image.DecompressionBombError: the image is implausibly large.
    """
    from crowdvlm.data.images import open_image  # the one decoding rule (EXIF orientation applied)

    return open_image(path)  # decoded now, in the worker thread: a corrupt file fails here


def try_load_image(path: str | Path) -> tuple[Image.Image | None, str | None]:
    """:func:`load_image`, returning ``(image, None)`` or ``(None, "why it failed")``."""
    try:
        return load_image(path), None
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        return None, f"cannot load image {path}: {type(err).__name__}: {err}"
