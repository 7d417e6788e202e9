"""What the page's two buttons do, as plain functions of the uploaded paths (no gradio import here).

Each handler returns what its components show; a refused or failing request becomes a message, so the page
shows it and the server goes on serving (the traceback of an unexpected failure goes to the log). Messages
never show a server path (:func:`crowdvlm.app.uploads.without_paths`), and a result image is a file of ours
in a compact format (:meth:`CountingService.result_file`), never a decoded image gradio would re-encode as PNG.
"""

from __future__ import annotations

import html
import logging
from pathlib import Path

from crowdvlm.app.service import CountingService
from crowdvlm.app.uploads import (
    UploadedImage,
    UploadRefused,
    check_upload_path,
    expand_uploads,
    without_paths,
)

__all__ = ["PageHandlers", "refusal_html"]

logger = logging.getLogger(__name__)


def refusal_html(message: str) -> str:
    """A refusal or error as the page shows it (escaped: file names come from the user; no server path)."""
    return f"<div class='crowdvlm-error'><b>{html.escape(without_paths(message))}</b></div>"


class PageHandlers:
    """The page's requests over a loaded service.

    Args:
        service: the loaded model.
        upload_roots: the only folders whose files a request may name (gradio's upload folder, the examples).
    """

    def __init__(self, service: CountingService, upload_roots: list[Path]):
        self.service = service
        self.upload_roots = upload_roots

    def count_one(self, image_path: str | None, question: str) -> tuple[str | None, str, str]:
        """One image -> (the path of the image as the model saw it, its points drawn if any; the result as
        HTML; the reasoning and raw answer)."""
        if not image_path:
            return None, refusal_html("nothing uploaded: add an image (upload, paste or pick an example)"), ""
        try:
            path = check_upload_path(image_path, self.upload_roots, self.service.limits)
            [prediction], [rgb], seconds = self.service.count(
                [UploadedImage(Path(image_path).name, path=path)], question, keep_images=True
            )
        except UploadRefused as err:
            return None, refusal_html(str(err)), ""
        except Exception as err:  # the request boundary: shown on the page and logged; the app keeps serving
            logger.exception("request failed")
            return None, refusal_html(f"error: {type(err).__name__}: {err}"), ""
        if prediction.error:
            return None, refusal_html(prediction.error), ""
        if prediction.points:  # drawn as `crowdvlm predict --points` draws them
            from crowdvlm.pointing.overlay import draw_points

            suffix = self.service.result_suffix(rgb.size)
            shown = str(draw_points(path, self.service.new_file("points", suffix), prediction.points))
        else:
            shown = str(self.service.result_file(rgb))
        count = "no count in the answer" if prediction.count is None else str(prediction.count)
        points = f" · {len(prediction.points)} points drawn" if prediction.points else ""
        result = (
            f"<div class='crowdvlm-result'><span id='crowdvlm-count'>{count}</span>"
            f"<br>took {seconds:.2f} s{points}</div>"
        )
        reasoning = prediction.reasoning if prediction.reasoning is not None else "(no <think> block)"
        return shown, result, f"{reasoning}\n\n--- raw answer ---\n{prediction.answer}"

    def count_many(self, files: list[str] | None, question: str) -> tuple[list[list], str | None, str]:
        """Images and zips -> (the table's rows, the CSV's path, a status line as HTML)."""
        try:
            images = expand_uploads(files or [], self.upload_roots, self.service.limits)
            predictions, _, seconds = self.service.count(images, question)
        except UploadRefused as err:
            return [], None, refusal_html(str(err))
        except Exception as err:  # the request boundary, as in count_one
            logger.exception("request failed")
            return [], None, refusal_html(f"error: {type(err).__name__}: {err}")
        failed = sum(p.error is not None for p in predictions)
        status = f"{len(predictions)} images, {failed} with errors, took {seconds:.2f} s"
        return [p.row() for p in predictions], str(self.service.write_csv(predictions)), status
