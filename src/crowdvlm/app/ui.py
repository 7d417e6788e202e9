"""The Gradio page: one image -> count, reasoning, points, time; several images or a zip -> table + CSV.

Everything a request does goes through :class:`crowdvlm.app.service.CountingService`; this module only lays
out the page and turns outcomes into what the components show. Targets gradio 6.31.
"""

from __future__ import annotations

import json
import logging
from importlib import resources
from pathlib import Path

import gradio as gr

from crowdvlm.app.overlay import draw_points
from crowdvlm.app.service import CSV_COLUMNS, CountingService
from crowdvlm.app.uploads import UploadedImage, UploadRefused, check_upload_path, expand_uploads

__all__ = ["EXAMPLES_DIR", "PAGE_CSS", "build_page", "examples", "upload_only"]

logger = logging.getLogger(__name__)

EXAMPLES_DIR = Path(str(resources.files("crowdvlm.app") / "examples"))
# Passed to launch(css=...) (gradio 6 takes page CSS there, not in Blocks).
PAGE_CSS = ".crowdvlm-error{color:#b00020} #crowdvlm-count{font-size:2.5em;font-weight:700}"


def examples() -> list[dict]:
    """The example images shipped in the package (made by ``crowdvlm data synth``): image, question, count."""
    listing = json.loads((EXAMPLES_DIR / "examples.json").read_text(encoding="utf-8"))
    return [{**row, "image": EXAMPLES_DIR / row["image"]} for row in listing["examples"]]


def upload_only(image: gr.Image) -> gr.Image:
    """Make ``image`` hand the handler the uploaded file's path without decoding it.

    gradio 6.31's ``Image.preprocess`` opens the file with PIL (and may convert it) before the handler runs,
    so a huge or corrupt upload would be decoded before our limits see it, with gradio's generic error; and
    it decodes ``data:`` URLs that an API client sends. Here the path goes to the handler unopened (it checks
    location, size and pixels first), and a ``data:`` URL is refused. The override is on the instance: a
    subclass of a gradio component becomes a custom component (its own frontend, a generated ``.pyi``).
    """

    def preprocess(payload):
        if payload is None:
            return None
        if payload.url and payload.url.startswith("data:"):
            raise gr.Error("refused: send the image as an upload, not as a data: URL")
        if payload.path is None:
            raise gr.Error("refused: no uploaded file in the request")
        return str(payload.path)

    image.preprocess = preprocess
    return image


def _refusal(message: str) -> str:
    return f"<div class='crowdvlm-error'><b>{_escape(message)}</b></div>"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def build_page(
    service: CountingService, *, model_name: str, question: str | None = None, queue_size: int = 16
) -> gr.Blocks:
    """The app's page over a loaded ``service``, its queue set; launch it with ``.launch(css=PAGE_CSS, ...)``.

    Args:
        service: the loaded model behind the page.
        model_name: shown at the top of the page.
        question: the question the page starts with (default: the first example's).
        queue_size: requests that may wait; one runs at a time (both tabs share one queue), more are refused.
    """
    upload_roots = [Path(gr.utils.get_upload_folder()), EXAMPLES_DIR]
    shipped = examples()
    question = question or shipped[0]["question"]

    def count_one(image_path: str | None, question: str):
        if not image_path:
            return None, _refusal("nothing uploaded: add an image (upload, paste or pick an example)"), ""
        try:
            path = check_upload_path(image_path, upload_roots, service.limits)
            [prediction], [rgb], seconds = service.count(
                [UploadedImage(Path(image_path).name, path=path)], question, keep_images=True
            )
        except UploadRefused as err:
            return None, _refusal(str(err)), ""
        except Exception as err:  # the request boundary: shown on the page and logged; the app keeps serving
            logger.exception("request failed")
            return None, _refusal(f"error: {type(err).__name__}: {err}"), ""
        if prediction.error:
            return None, _refusal(prediction.error), ""
        shown = draw_points(rgb, prediction.points) if prediction.points else rgb
        count = "no count in the answer" if prediction.count is None else str(prediction.count)
        points = f" · {len(prediction.points)} points drawn" if prediction.points else ""
        result = (
            f"<div class='crowdvlm-result'><span id='crowdvlm-count'>{count}</span>"
            f"<br>took {seconds:.2f} s{points}</div>"
        )
        reasoning = prediction.reasoning if prediction.reasoning is not None else "(no <think> block)"
        return shown, result, f"{reasoning}\n\n--- raw answer ---\n{prediction.answer}"

    def count_many(files: list[str] | None, question: str):
        empty = gr.update(value=None)
        try:
            images = expand_uploads(files or [], upload_roots, service.limits)
            predictions, _, seconds = service.count(images, question)
        except UploadRefused as err:
            return [], empty, _refusal(str(err))
        except Exception as err:  # the request boundary, as in count_one
            logger.exception("request failed")
            return [], empty, _refusal(f"error: {type(err).__name__}: {err}")
        failed = sum(p.error is not None for p in predictions)
        status = f"{len(predictions)} images, {failed} with errors, took {seconds:.2f} s"
        return [p.row() for p in predictions], str(service.write_csv(predictions)), status

    with gr.Blocks(title="crowdvlm: count with a VLM", analytics_enabled=False) as page:
        gr.Markdown(f"## crowdvlm: count with a vision-language model\nModel: `{_escape(model_name)}`")
        with gr.Tab("One image"):
            with gr.Row():
                with gr.Column():
                    image = upload_only(
                        gr.Image(
                            type="filepath",
                            sources=["upload", "clipboard"],
                            label="Image",
                            elem_id="image-in",
                        )
                    )
                    asked = gr.Textbox(value=question, label="Question", max_lines=2, elem_id="question")
                    button = gr.Button("Count", variant="primary", elem_id="count-button")
                    gr.Examples(
                        [[str(row["image"]), row["question"]] for row in shipped],
                        inputs=[image, asked],
                        label="Examples (synthetic; true counts "
                        + ", ".join(str(row["count"]) for row in shipped)
                        + ")",
                    )
                with gr.Column():
                    result = gr.HTML("<div class='crowdvlm-hint'>upload an image and press Count</div>",
                                     elem_id="result")  # fmt: skip
                    shown = gr.Image(
                        label="Answer (points drawn when given)", interactive=False, format="png"
                    )
                    reasoning = gr.Textbox(label="Reasoning and raw answer", lines=6, elem_id="reasoning")
            button.click(count_one, [image, asked], [shown, result, reasoning], concurrency_id="model")
        with gr.Tab("Many images or a zip"):
            files = gr.File(
                file_count="multiple",
                file_types=["image", ".zip"],
                label=f"Images or zips (at most {service.limits.max_images} images)",
                elem_id="files-in",
            )
            batch_question = gr.Textbox(value=question, label="Question", max_lines=2)
            batch_button = gr.Button("Count all", variant="primary", elem_id="batch-button")
            batch_status = gr.HTML(elem_id="batch-status")
            table = gr.Dataframe(headers=list(CSV_COLUMNS), interactive=False, elem_id="table")
            csv_file = gr.File(label="CSV", elem_id="csv")
            batch_button.click(
                count_many, [files, batch_question], [table, csv_file, batch_status], concurrency_id="model"
            )
    page.queue(max_size=queue_size, default_concurrency_limit=1)
    return page
