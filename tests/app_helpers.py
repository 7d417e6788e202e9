"""The app tests' stand-ins: a backend that answers from a table keyed by image width, and PNG bytes."""

from __future__ import annotations

import io

from PIL import Image

from crowdvlm.evaluate.backends.base import Answer, Prepared, try_load_image


class ScriptedBackend:
    """A backend that answers from a table keyed by image width, through the real prepare/generate protocol."""

    name = "scripted"

    def __init__(self, answers: dict[int, str]):
        self.answers = answers
        self.batches: list[list[str]] = []
        self.files: list[str] = []  # the file names the service handed over

    def prepare(self, items):
        self.files += [item.image.name for item in items]
        loaded = [try_load_image(item.image) for item in items]
        return Prepared(items, [error for _, error in loaded], [image for image, _ in loaded if image])

    def generate(self, prepared: Prepared):
        self.batches.append([item.prompt for item in prepared.loaded])
        return [Answer(text=self.answers[image.width]) for image in prepared.payload]

    def describe(self):
        return {"backend": self.name}


def png(width: int, height: int = 20) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "white").save(buffer, format="PNG")
    return buffer.getvalue()
