"""The explorer in a real browser (Debian's Chromium, driven by Selenium) and through gradio_client.

One server (``python -m rsigradcam.app`` with a small ``module:callable`` model on a free
port of 127.0.0.1) serves both tests; it is always stopped at the end. The browser runs
headless with its background networking off, and the test checks that the page asked
nothing of any other host (no CDN, no analytics).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ROOT = Path(__file__).resolve().parents[2]
WAIT = 60  # seconds, for every explicit wait
MODEL = "tests.dataset_model:small_cnn"

needs_browser = pytest.mark.skipif(
    not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()),
    reason="needs Debian's chromium and chromium-driver (/usr/bin/chromium, "
    "/usr/bin/chromedriver); .ci/run installs them with apt-get",
)
pytest.importorskip("gradio", reason="the app extra: pip install 'rsigradcam[app]'")
# The server is the browser's page; the gradio_client tests share it.
pytestmark = pytest.mark.browser


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The explorer's URL; the server runs for this module's tests and is then stopped."""
    port = _free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "rsigradcam.app", "--model", MODEL, "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 3 * WAIT
        while True:
            if process.poll() is not None:
                pytest.fail(f"the app exited with {process.returncode}: {log.read_text()}")
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the app did not answer at {url}: {log.read_text()}")
            time.sleep(0.5)
        yield url
    finally:
        _stop(process)
    assert process.returncode == 0, log.read_text()
    assert "Traceback" not in log.read_text()


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from skimage import data

    path = tmp_path_factory.mktemp("photos") / "chelsea.png"
    Image.fromarray(data.chelsea()).save(path)
    return path


def _driver(profile: Path):  # type: ignore[no-untyped-def]
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--disable-dev-shm-usage",
        "--window-size=1400,2200",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


def _requested_hosts(driver) -> set[str]:  # type: ignore[no-untyped-def]
    hosts = set()
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            parsed = urlparse(message["params"]["request"]["url"])
            if parsed.scheme in ("http", "https", "ws", "wss"):
                hosts.add(parsed.hostname or "")
    return hosts


# Cells whose text runs over more than one line, and captions cut short.
_WRAPPED_CELLS = """
return [...document.querySelectorAll('#rsg-table th, #rsg-table td')].filter(cell => {
  const range = document.createRange();
  range.selectNodeContents(cell);
  const tops = new Set([...range.getClientRects()].map(r => Math.round(r.top)));
  return tops.size > 1;
}).map(cell => cell.textContent);
"""
_CUT_CAPTIONS = """
return [...document.querySelectorAll('#rsg-overlays .caption-label')]
  .filter(c => c.scrollWidth > c.clientWidth + 1).map(c => c.textContent);
"""
_ERROR_PILLS = """
return [...document.querySelectorAll('.error')]
  .filter(e => e.offsetParent !== null && e.textContent.trim() === 'Error').length;
"""


@needs_browser
def test_page_explains_an_upload_and_reports_a_bad_file_in_one_line(
    server: str, photo: Path, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver = _driver(tmp_path / "profile")
    wait = WebDriverWait(driver, WAIT)

    def status() -> str:  # the page's error line, "" when there is none
        lines = driver.find_elements(By.CSS_SELECTOR, "#rsg-status .rsg-error")
        return " ".join(str(line.text).strip() for line in lines)

    def explained_again() -> None:
        driver.find_element(By.CSS_SELECTOR, "#rsg-explain").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#rsg-overlays img"))
        wait.until(lambda d: d.execute_script(
            "const i = document.querySelector('#rsg-overlays img');"
            "return i !== null && i.complete && i.naturalWidth > 0;"
        ))

    try:
        driver.get(server)
        upload = wait.until(
            ec.presence_of_element_located((By.CSS_SELECTOR, "#rsg-image input[type=file]"))
        )
        upload.send_keys(str(photo))
        # The top-5 classes appear, the top-1 ticked.
        wait.until(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, "#rsg-classes input[type=radio]")) == 5
        )
        wait.until(
            lambda d: d.find_elements(By.CSS_SELECTOR, "#rsg-classes input[type=radio]:checked")
        )
        # Before the first explanation, the convergence panel says how to fill it.
        note = driver.find_element(By.CSS_SELECTOR, "#rsg-conv-note").text
        assert "Explain an image first" in note and "Convergence as m grows" in note
        explained_again()
        overlay = driver.find_element(By.CSS_SELECTOR, "#rsg-overlays img")
        shot = np.asarray(Image.open(__import__("io").BytesIO(overlay.screenshot_as_png)))
        assert shot[..., :3].std() > 20, "the overlay is blank"
        # The path plot is drawn, and the table names the completeness error.
        wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "#rsg-path img")))
        table = driver.find_element(By.CSS_SELECTOR, "#rsg-table").text
        assert "completeness error" in table and "RSI-Grad-CAM" in table
        assert len(driver.find_elements(By.CSS_SELECTOR, "#rsg-overlays img")) >= 2
        # A readable table (no word or number split over two lines), whole captions.
        assert driver.execute_script(_WRAPPED_CELLS) == []
        assert driver.execute_script(_CUT_CAPTIONS) == []
        note = driver.find_element(By.CSS_SELECTOR, "#rsg-conv-note").text
        assert "Click Convergence as m grows to explain" in note
        driver.save_screenshot(str(tmp_path / "explained.png"))

        # A layer typed into the list that the model does not have: refused, close names.
        typed = driver.find_element(By.CSS_SELECTOR, "#rsg-layers input")
        typed.send_keys("conv2", Keys.ENTER)
        driver.find_element(By.CSS_SELECTOR, "#rsg-explain").click()
        wait.until(lambda d: status().startswith("unknown layer"))
        assert status().startswith("unknown layer 'conv2' (did you mean 'conv'?)")
        assert not driver.find_elements(By.CSS_SELECTOR, "#rsg-overlays img")  # not stale
        assert driver.execute_script(_ERROR_PILLS) == 0
        # The next run clears the error.
        driver.find_element(By.CSS_SELECTOR, "#rsg-layers input").send_keys(Keys.BACKSPACE)
        explained_again()
        wait.until(lambda d: status() == "")
        assert driver.execute_script(_ERROR_PILLS) == 0

        # An unreadable file: one line in the page, no traceback.
        broken = tmp_path / "broken.png"
        broken.write_bytes(photo.read_bytes()[: photo.stat().st_size // 2])
        driver.find_element(By.CSS_SELECTOR, "#rsg-image button[aria-label='Remove Image']").click()
        upload = wait.until(
            ec.presence_of_element_located((By.CSS_SELECTOR, "#rsg-image input[type=file]"))
        )
        upload.send_keys(str(broken))
        wait.until(lambda d: status() != "")
        assert status() == "'broken.png' is not a readable image: image file is truncated"
        assert "Traceback" not in driver.find_element(By.TAG_NAME, "body").text
        assert driver.execute_script(_ERROR_PILLS) == 0
        driver.save_screenshot(str(tmp_path / "error.png"))
        assert (tmp_path / "explained.png").stat().st_size > 0

        # Nothing was asked of any other host than the app's.
        assert _requested_hosts(driver) <= {"127.0.0.1"}
    finally:
        driver.quit()


def test_explain_endpoint_through_gradio_client(server: str, photo: Path) -> None:
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    client = Client(server, verbose=False)
    picture, summary = client.predict(
        handle_file(str(photo)), "conv", "rsi", 8, api_name="/explain"
    )
    image = np.asarray(Image.open(picture))
    assert image.shape == (224, 224, 3) and image.std() > 20
    assert summary["layer"] == "conv" and summary["method"] == "rsi"
    assert summary["steps"] == 8 and summary["evaluations"] == 9
    assert summary["class"] is None and 0 < summary["probability"] <= 1
    assert summary["class_id"] == summary["top5"][0]["class_id"]
    assert 0 <= summary["completeness_error"] < 0.5
    with pytest.raises(AppError, match=r"unknown layer 'conv2' \(did you mean 'conv'\?\)"):
        client.predict(handle_file(str(photo)), "conv2", "rsi", 8, api_name="/explain")


def test_two_clients_at_once_get_their_own_results(server: str, photo: Path) -> None:
    from gradio_client import Client, handle_file

    first, second = Client(server, verbose=False), Client(server, verbose=False)
    jobs = [
        first.submit(handle_file(str(photo)), "conv", "rsi", 4, api_name="/explain"),
        second.submit(handle_file(str(photo)), "act", "gradcam", 4, api_name="/explain"),
    ]
    summaries = [job.result(timeout=WAIT)[1] for job in jobs]
    assert [(s["layer"], s["method"]) for s in summaries] == [("conv", "rsi"), ("act", "gradcam")]
    assert summaries[0]["evaluations"] == 5 and summaries[1]["evaluations"] == 1
