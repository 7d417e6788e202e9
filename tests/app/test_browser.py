"""`crowdvlm app` end to end in a real headless Chromium (Debian's chromium + chromium-driver, via selenium).

The app runs as its own process on the tiny model, on 127.0.0.1 and a free port. The test uploads an image
and waits for the count, which must equal `crowdvlm predict`'s on the same image (the random tiny model
answers nonsense, so the raw answer text is compared too); then a corrupt and a too-large file, whose
messages must appear on the page while the app keeps serving; then a zip in the batch tab. Every wait is
bounded.

With CROWDVLM_APP_SCREENSHOT=docs/app-screenshot.png the page with its result is saved there (the README's
screenshot), and the app serves the demo's shipped base model (the tiny model after a counting SFT, which
answers `<answer>N</answer>`) instead of the random one, so the picture shows a count; the same checks run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

selenium = pytest.importorskip("selenium", reason="selenium is in the app extra: pip install -e '.[dev,app]'")
pytest.importorskip("gradio", reason="gradio is installed by `make setup` (see docs/app.md)")

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from app_helpers import served_app  # noqa: E402
from crowdvlm.app.ui import examples  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason="no Chromium + chromedriver on this machine: apt-get install chromium chromium-driver "
    "(.ci/run does; it could not here)",
)

MAX_NEW_TOKENS = 8
UPLOAD_LIMIT_MB = 0.1  # small, so a too-large image is quick to make
START_TIMEOUT = 180  # s: the app imports torch and gradio and loads the model on a contended 2-core machine
REQUEST_TIMEOUT = 120  # s: one page action, from upload to shown result
# What a request shows (not gradio's progress timer, which overlays the same box while it runs).
RESULT = "#result .crowdvlm-result, #result .crowdvlm-error"


SCREENSHOT = os.environ.get("CROWDVLM_APP_SCREENSHOT")


def model_options(tiny_model_dir: Path) -> tuple[list[str], str]:
    """The model options of the app under test and of the `crowdvlm predict` it is compared with, and the
    question the page starts with."""
    options = ["--device", "cpu", "--max-new-tokens", str(MAX_NEW_TOKENS)]
    if not SCREENSHOT:
        return ["--model", str(tiny_model_dir), *options], examples()[0]["question"]
    from importlib import resources

    base = Path(os.path.relpath(resources.files("crowdvlm.demo") / "base"))  # relative: the page shows it
    prompt = json.loads((base / "base_recipe.json").read_text())["prompt"]
    options += ["--prompt-template", prompt["prompt_template"], "--output-format", prompt["output_format"]]
    return ["--model", str(base), *options], prompt["question"]


@pytest.fixture(scope="module")
def app_url(tiny_model_dir, tmp_path_factory):
    """The app serving the tiny model; stopped (and waited for) after the module's tests."""
    options, question = model_options(tiny_model_dir)
    options += ["--question", question, "--max-upload-mb", str(UPLOAD_LIMIT_MB)]
    with served_app(options, tmp_path_factory.mktemp("app") / "app.log", START_TIMEOUT) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(REQUEST_TIMEOUT)
    yield driver
    driver.quit()


def wait_for(driver, condition, what: str):
    """Wait (bounded) until ``condition(driver)`` is truthy; fail naming ``what`` and the page's text."""
    try:
        return WebDriverWait(driver, REQUEST_TIMEOUT, poll_frequency=0.25).until(condition)
    except selenium.common.exceptions.TimeoutException:
        pytest.fail(
            f"timed out after {REQUEST_TIMEOUT} s waiting for {what}; page:\n{driver.find_element(By.TAG_NAME, 'body').text[:2000]}"
        )


def text_of(driver, css: str) -> str:
    found = driver.find_elements(By.CSS_SELECTOR, css)
    return found[0].text if found else ""


def upload_and_count(driver, path: Path) -> str:
    """Put ``path`` in the image input (clearing any image there), press Count, return the new result text.

    The result must change: each step of the tests below is chosen to give a result unlike the one before.
    """
    before = text_of(driver, RESULT)
    for button in driver.find_elements(By.CSS_SELECTOR, "#image-in button[aria-label='Clear']"):
        button.click()
    field = wait_for(
        driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#image-in input[type=file]"), "the upload field"
    )
    field[0].send_keys(str(path))
    time.sleep(1)  # let the upload land before the click (a click before it would count nothing)
    driver.find_element(By.ID, "count-button").click()
    return wait_for(
        driver, lambda d: (t := text_of(d, RESULT)) != before and t, f"the result for {path.name}"
    )


def predict(tiny_model_dir, image: Path, question: str) -> dict:
    """`crowdvlm predict --json` on one image, as a separate process like the app."""
    command = [sys.executable, "-m", "crowdvlm", "predict", *model_options(tiny_model_dir)[0]]
    command += ["--question", question, "--json", str(image)]
    out = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_count_matches_predict_and_bad_uploads_show_their_messages(
    app_url, browser, tiny_model_dir, tmp_path
):
    example = examples()[0]
    browser.get(app_url)
    wait_for(browser, lambda d: d.find_elements(By.ID, "count-button"), "the page")
    question = browser.find_element(By.CSS_SELECTOR, "#question textarea, #question input").get_attribute(
        "value"
    )
    assert question == model_options(tiny_model_dir)[1]

    # 1. An image: the count and raw answer the page shows are `crowdvlm predict`'s.
    result = upload_and_count(browser, example["image"])
    expected = predict(tiny_model_dir, example["image"], question)
    shown_count = text_of(browser, "#crowdvlm-count")
    assert shown_count == ("no count in the answer" if expected["count"] is None else str(expected["count"]))
    assert "took" in result and " s" in result
    raw = browser.find_element(By.CSS_SELECTOR, "#reasoning textarea").get_attribute("value")
    assert raw.endswith("--- raw answer ---\n" + expected["text"])
    if os.environ.get("CROWDVLM_APP_SCREENSHOT"):
        browser.save_screenshot(os.environ["CROWDVLM_APP_SCREENSHOT"])

    # 2. A corrupt file: refused with its name, on the page.
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    assert "refused: corrupt.png is not an image file" in upload_and_count(browser, corrupt)

    # 3. A file over the upload limit: gradio refuses it at upload with a message naming the limit.
    noise = np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    big = tmp_path / "big.png"
    Image.fromarray(noise).save(big)
    assert big.stat().st_size > UPLOAD_LIMIT_MB * 1024 * 1024
    upload_and_count(browser, big)
    toast = wait_for(browser, lambda d: text_of(d, ".toast-body"), "the too-large message")
    assert "exceed the maximum allowed size" in toast and "big.png" in toast

    # 4. The app kept serving: the image again gives the same count.
    upload_and_count(browser, example["image"])
    assert text_of(browser, "#crowdvlm-count") == shown_count


def test_batch_tab_gives_a_table_and_a_csv(app_url, browser, tmp_path):
    shipped = examples()
    archive = tmp_path / "batch.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for row in shipped[:2]:
            zf.write(row["image"], f"imgs/{row['image'].name}")
        zf.writestr("imgs/broken.png", b"not an image")
    browser.get(app_url)
    wait_for(
        browser,
        lambda d: d.find_elements(By.XPATH, "//button[@role='tab'][contains(., 'Many images')]"),
        "the tabs",
    )
    browser.find_element(By.XPATH, "//button[@role='tab'][contains(., 'Many images')]").click()
    field = wait_for(
        browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#files-in input[type=file]"), "the file field"
    )
    field[0].send_keys(str(archive))
    time.sleep(1)
    browser.find_element(By.ID, "batch-button").click()
    status = wait_for(
        browser,
        lambda d: "images," in text_of(d, "#batch-status") and text_of(d, "#batch-status"),
        "the batch status",
    )
    assert status.startswith("3 images, 1 with errors")
    table = text_of(browser, "#table")
    for name in (f"batch.zip/imgs/{shipped[0]['image'].name}", "batch.zip/imgs/broken.png"):
        assert name in table
    assert "is not an image file" in table
    link = wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#csv a[href]"), "the CSV link")
    assert link[0].get_attribute("href").startswith("http://127.0.0.1:")
