"""The Gradio page: one image -> count, reasoning, points, time; several images or a zip -> table + CSV.

This module only lays out the page and wires its buttons to :class:`crowdvlm.app.handlers.PageHandlers`
(which hold all request handling, without gradio). Targets gradio 6.31.
"""

from __future__ import annotations

import html
import json
from importlib import resources
from pathlib import Path

import gradio as gr

from crowdvlm.app.handlers import PageHandlers
from crowdvlm.app.service import CSV_COLUMNS, CountingService

__all__ = ["EXAMPLES_DIR", "PAGE_CSS", "build_page", "examples", "upload_only"]

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

    handlers = PageHandlers(service, upload_roots)

    with gr.Blocks(title="crowdvlm: count with a VLM", analytics_enabled=False) as page:
        gr.Markdown(f"## crowdvlm: count with a vision-language model\nModel: `{html.escape(model_name)}`")
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
                    result = gr.HTML(
                        "<div class='crowdvlm-hint'>upload an image and press Count</div>", elem_id="result"
                    )
                    shown = gr.Image(
                        label="Answer (points drawn when given)", interactive=False, format="png"
                    )
                    reasoning = gr.Textbox(label="Reasoning and raw answer", lines=6, elem_id="reasoning")
            button.click(
                handlers.count_one, [image, asked], [shown, result, reasoning], concurrency_id="model"
            )
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
                handlers.count_many,
                [files, batch_question],
                [table, csv_file, batch_status],
                concurrency_id="model",
            )
    page.queue(max_size=queue_size, default_concurrency_limit=1)
    return page
