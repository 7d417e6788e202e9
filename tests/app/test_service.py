"""The app's request handling without a browser: counting, per-image errors, points, the CSV, the CLI."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest
from PIL import Image

from app_helpers import ScriptedBackend, png
from crowdvlm.app.service import CSV_COLUMNS, CountingService, ImageCount, to_csv
from crowdvlm.app.uploads import Limits, UploadedImage, UploadRefused


def local_points_reader(text: str, size: tuple[int, int]) -> list[tuple[float, float]]:
    """Stands in for crowdvlm.parsing's point parser: ``(x, y)`` pairs written as ``@x,y``."""
    pairs = [token[1:].split(",") for token in text.split() if token.startswith("@")]
    return [(float(x), float(y)) for x, y in pairs]


@pytest.fixture
def service(tmp_path):
    backend = ScriptedBackend(
        {
            30: "<think>two dots</think><answer>2</answer> @5,5 @20,10",
            40: "<answer>7</answer>",
            50: "no idea",
        }
    )
    svc = CountingService(
        backend, batch_size=2, points_reader=local_points_reader, work_dir=tmp_path / "work"
    )
    yield svc
    svc.close()


def test_counts_reasoning_points_and_per_image_errors(service, tmp_path):
    on_disk = tmp_path / "thirty.png"
    on_disk.write_bytes(png(30))
    images = [
        UploadedImage("thirty.png", path=on_disk),
        UploadedImage("b.zip/forty.png", data=png(40)),
        UploadedImage("b.zip/broken.png", data=b"\x89PNG\r\n\x1a\n" + b"\0" * 30),
        UploadedImage("b.zip/fifty.png", data=png(50)),
        UploadedImage("b.zip/huge.png", data=png(400, 400)),
    ]
    service.limits = Limits(max_pixels=10_000)
    predictions, decoded, seconds = service.count(images, "How many dots are in the image?", keep_images=True)
    by_name = {p.image: p for p in predictions}
    assert [p.image for p in predictions] == [i.name for i in images]
    assert (by_name["thirty.png"].count, by_name["thirty.png"].reasoning) == (2, "two dots")
    assert by_name["thirty.png"].points == [(5.0, 5.0), (20.0, 10.0)]
    assert (by_name["b.zip/forty.png"].count, by_name["b.zip/forty.png"].reasoning) == (7, None)
    assert by_name["b.zip/fifty.png"].count is None and by_name["b.zip/fifty.png"].error is None
    assert "broken.png is not an image file" in by_name["b.zip/broken.png"].error
    assert "megapixels" in by_name["b.zip/huge.png"].error
    assert [d is None for d in decoded] == [False, False, True, False, True]
    assert seconds > 0
    # Refused images never reach the model; the others go in batches of 2, with the eval prompt.
    assert [len(batch) for batch in service.backend.batches] == [2, 1]
    assert service.backend.batches[0][0].startswith("How many dots are in the image? ")
    # Zip members reach the backend as files written by the service, never under the member's name, and
    # are removed once the request is answered.
    assert service.backend.files == ["thirty.png", "0001.img", "0003.img"]
    assert not [p for p in service.work_dir.rglob("*") if p.is_file()]


def test_page_handlers_show_results_refusals_and_errors_and_keep_serving(service, tmp_path):
    from crowdvlm.app.handlers import PageHandlers

    roots = tmp_path / "uploads"
    roots.mkdir()
    good = roots / "thirty.png"
    good.write_bytes(png(30))
    handlers = PageHandlers(service, [roots])
    shown, result, reasoning = handlers.count_one(str(good), "How many dots?")
    assert "<span id='crowdvlm-count'>2</span>" in result and "2 points drawn" in result
    with Image.open(shown) as drawn:  # the copy with its points drawn, as `crowdvlm predict --points` draws
        assert drawn.getpixel((5, 5)) == (230, 30, 30) and drawn.getpixel((15, 15)) == (255, 255, 255)
    assert reasoning.startswith("two dots")
    assert "nothing uploaded" in handlers.count_one(None, "How many dots?")[1]
    outside = tmp_path / "secret.png"
    outside.write_bytes(png(30))
    assert "only files uploaded through this page" in handlers.count_one(str(outside), "How many?")[1]
    odd = roots / "<b>odd&.png"
    odd.write_bytes(b"not an image")
    assert (
        "refused: &lt;b&gt;odd&amp;.png is not an image file" in handlers.count_one(str(odd), "How many?")[1]
    )

    def boom(items):
        raise RuntimeError("the model fell over")

    working = service.backend.prepare
    service.backend.prepare = boom
    assert handlers.count_one(str(good), "How many?")[1:] == (
        "<div class='crowdvlm-error'><b>error: RuntimeError: the model fell over</b></div>",
        "",
    )
    service.backend.prepare = working
    assert "crowdvlm-count'>2<" in handlers.count_one(str(good), "How many?")[1]  # still serving

    rows, csv_path, status = handlers.count_many([str(good), str(odd)], "How many?")
    assert [row[:2] for row in rows] == [["thirty.png", 2], ["<b>odd&.png", ""]]
    assert status.startswith("2 images, 1 with errors") and csv_path.endswith(".csv")
    assert handlers.count_many([], "How many?")[:2] == ([], None)


def test_batch_requests_keep_no_decoded_images(service):
    _, decoded, _ = service.count([UploadedImage("x.png", data=png(40))], "How many?")
    assert decoded == [None]


@pytest.mark.parametrize(
    ("question", "message"), [("  ", "question is empty"), ("x" * 501, "501 characters")]
)
def test_bad_questions_are_refused(service, question, message):
    with pytest.raises(UploadRefused, match=message):
        service.count([UploadedImage("x.png", data=png(40))], question)


def test_csv_round_trips_and_quotes_answers(service):
    predictions = [
        ImageCount("a.png", 3, '<answer>3</answer>, "quoted"\nsecond line'),
        ImageCount("z.zip/b,c.png", error="refused: b,c.png is corrupt"),
    ]
    path = service.write_csv(predictions)
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
    assert rows[0] == list(CSV_COLUMNS)
    assert rows[1] == ["a.png", "3", "", '<answer>3</answer>, "quoted"\nsecond line']
    assert rows[2] == ["z.zip/b,c.png", "", "refused: b,c.png is corrupt", ""]
    assert to_csv([]) == "image,count,error,answer\n"


def test_points_are_read_in_the_frame_the_model_points_in():
    from crowdvlm.app.service import frame_points_reader

    answer = '[{"point_2d": [500, 250]}, {"point_2d": [1000, 1000]}]<answer>2</answer>'
    assert frame_points_reader("relative-1000")(answer, (200, 100)) == [(100.0, 25.0), (200.0, 100.0)]
    assert frame_points_reader("original")(answer, (2000, 1000)) == [(500.0, 250.0), (1000.0, 1000.0)]
    assert frame_points_reader("original")("<answer>3</answer>", (20, 10)) == []


def test_app_counts_exactly_as_crowdvlm_predict(tiny_model_dir, tmp_path, capsys):
    """Same backend code, prompt and parser: the app's answer text and count equal `crowdvlm predict`'s."""
    from crowdvlm.app.ui import examples
    from crowdvlm.evaluate.backends.hf_backend import HFBackend
    from crowdvlm.evaluate.cli import predict_main

    example = examples()[0]
    service = CountingService(HFBackend.load(tiny_model_dir, max_new_tokens=8, device="cpu"))
    try:
        [prediction], _, _ = service.count([UploadedImage("x", path=example["image"])], example["question"])
    finally:
        service.close()
    argv = ["--model", str(tiny_model_dir), "--max-new-tokens", "8", "--device", "cpu", "--json"]
    predict_main([*argv, "--question", example["question"], str(example["image"])])
    predicted = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert prediction.error is None and predicted["error"] is None
    assert (prediction.answer, prediction.count) == (predicted["text"], predicted["count"])


def test_shipped_examples_are_small_synthetic_images():
    from crowdvlm.app.ui import examples

    shipped = examples()
    assert len(shipped) >= 3
    for row in shipped:
        assert row["image"].stat().st_size < 16_000
        with Image.open(row["image"]) as image:
            assert image.size == (192, 144)
        assert row["question"].endswith("?") and row["count"] >= 0


def test_the_page_runs_one_model_request_at_a_time_with_a_bounded_queue(service):
    from crowdvlm.app.ui import build_page

    page = build_page(service, model_name="scripted", queue_size=3)
    events = [fn for fn in page.fns.values() if fn.name in ("count_one", "count_many")]
    assert len(events) == 2
    assert {fn.concurrency_id for fn in events} == {"model"}  # one queue slot shared by both tabs
    assert {fn.concurrency_limit for fn in events} <= {
        1,
        "default",
    } and page._queue.default_concurrency_limit == 1
    assert page._queue.max_size == 3


def run_app(*args, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "crowdvlm", "app", *args], capture_output=True, text=True, timeout=timeout
    )


def test_app_help_imports_neither_torch_nor_gradio():
    code = (
        "import sys\nfrom crowdvlm.cli import main\ntry:\n    main(['app', '--help'])\nexcept SystemExit:\n"
        "    pass\nprint('HEAVY', sorted(m for m in ('torch', 'gradio', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert "--host HOST" in out.stdout and "default: 127.0.0.1" in out.stdout
    assert "HEAVY []" in out.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-images", "0"], "max_images must be >= 1"),
        (["--queue-size", "0"], "--queue-size must be >= 1"),
        (["--model", "/nonexistent/model-dir"], "model '/nonexistent/model-dir' not found"),
    ],
)
def test_bad_options_exit_2_with_one_line(args, message):
    result = run_app(*(["--model", "/nonexistent/model-dir"] if "--model" not in args else []), *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("crowdvlm app: error: ")]
    assert len(errors) == 1 and "Traceback" not in result.stderr


def test_the_app_extra_admits_the_gradio_the_app_is_tested_with():
    """`pip install crowdvlm[app]` installs a gradio of the tested range with its dependencies (no --no-deps
    step); both environments' constraints pin the tested one."""
    import tomllib
    from pathlib import Path

    import gradio
    from packaging.requirements import Requirement

    root = Path(__file__).parents[2]
    app = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]["app"]
    (line,) = [line for line in app if Requirement(line).name == "gradio"]
    assert gradio.__version__ in Requirement(line).specifier
    for constraints in ("constraints.txt", "constraints-vllm.txt"):
        assert f"gradio=={gradio.__version__}" in (root / constraints).read_text().splitlines(), constraints
    makefile = (root / "Makefile").read_text().lower()
    assert not [line for line in makefile.splitlines() if "--no-deps" in line and "gradio" in line]
    assert (
        f"(it installs {line})" in (root / "src/crowdvlm/app/cli.py").read_text()
    )  # the hint says the range
