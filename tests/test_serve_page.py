"""``lmseg serve`` in a real headless browser (Debian's ``chromium`` + ``chromium-driver``, driven by Selenium; run by
``.ci/run-serve``, which installs them): a user uploads an image, types a prompt and gets the overlay, a mask equal
to ``lmseg segment``'s and ``results.json``; a bad upload shows one line on the page; a volume gets a slice slider."""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from test_segment import PROMPT, _chest, _model

from lmseg_components.apps.segment import segment

webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium (the test extra has it)")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = pytest.mark.serve

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.fail("chromium and chromedriver are needed (apt-get install chromium chromium-driver; .ci/run-serve)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    yield driver
    driver.quit()


@pytest.fixture
def serve():
    """Start ``lmseg serve --port 0 ...`` and return its address, read from the line it prints."""
    servers = []

    def start(*args: str) -> str:
        command = [sys.executable, "-m", "lmseg_components.apps.cli", "serve", "--port", "0", "--device", "cpu", *args]
        server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        servers.append(server)
        line = server.stdout.readline()
        assert line.startswith("lmseg serve: "), (line, server.stderr.read() if server.poll() is not None else "")
        url = line.split(" at ")[1].split()[0]
        assert url.startswith("http://127.0.0.1:"), line  # this machine only, unless --host says otherwise
        return url

    yield start
    for server in servers:
        server.terminate()
        server.wait(timeout=30)


def _wait(driver, condition, timeout: float = 120):
    return WebDriverWait(driver, timeout).until(lambda d: condition(d))


def _open(driver, url: str, bundle: str) -> None:
    driver.get(url)
    _wait(driver, lambda d: d.find_element(By.ID, "bundle").text == bundle, 60)


def _data_url_bytes(href: str) -> bytes:
    return base64.b64decode(href.split(",", 1)[1])


def test_upload_type_see_the_overlay_and_download_lmseg_segments_mask(browser, serve, tmp_path):
    model = _model(tmp_path / "run", "tirnet_lmis")
    image = tmp_path / "chest.png"
    Image.fromarray(_chest()).save(image)
    (written,) = segment(image, "tirnet_lmis", model, tmp_path / "masks", PROMPT)
    expected = np.asarray(Image.open(tmp_path / "masks" / written["mask"]))

    _open(browser, serve("--model", str(model)), "tirnet_lmis")
    browser.find_element(By.ID, "image").send_keys(str(image))
    browser.find_element(By.ID, "prompts").send_keys(PROMPT)
    browser.find_element(By.ID, "run").click()
    overlay = _wait(browser, lambda d: d.find_elements(By.ID, "overlay-0"))[0]
    _wait(browser, lambda d: overlay.get_attribute("src").startswith("data:image/png;base64,"))
    assert browser.execute_script("return arguments[0].naturalWidth", overlay) >= expected.shape[1]

    link = browser.find_element(By.ID, "mask-0")
    assert link.get_attribute("download") == "chest_mask.png"
    mask = np.asarray(Image.open(io.BytesIO(_data_url_bytes(link.get_attribute("href")))))
    assert np.array_equal(mask, expected) and 0 < (expected > 0).mean() < 1
    caption = browser.find_element(By.ID, "caption-0").text
    assert caption.startswith(PROMPT) and f"score {written['score']:.2f}" in caption
    results = browser.find_element(By.ID, "download-results")
    assert results.is_displayed() and results.get_attribute("href").startswith("blob:")
    downloaded = browser.execute_async_script(
        "fetch(arguments[0]).then((r) => r.text()).then(arguments[1])", results.get_attribute("href")
    )
    assert json.loads(downloaded)[0]["mask"] == written["mask"] and json.loads(downloaded)[0]["image"] == "chest.png"
    assert not browser.find_element(By.ID, "error").is_displayed()

    notes = tmp_path / "notes.txt"  # a bad upload: one line on the page, the page still works
    notes.write_text("not an image")
    browser.find_element(By.ID, "image").send_keys(str(notes))
    browser.find_element(By.ID, "run").click()
    error = _wait(browser, lambda d: d.find_element(By.ID, "error").is_displayed() and d.find_element(By.ID, "error"))
    assert error.text.startswith("notes.txt: not an image lmseg reads") and "Traceback" not in error.text


def test_a_volume_gets_a_slice_slider(browser, serve, tmp_path):
    model = _model(tmp_path / "run", "tgcnet_ct_organs")
    volume = np.random.default_rng(0).normal(40, 30, (36, 30, 7)).astype(np.float32)
    volume[8:20, 6:18, 2:6] += 120
    image = tmp_path / "ct_1.nii.gz"
    nib.save(nib.Nifti1Image(volume, np.diag([0.8, 0.7, 2.5, 1.0])), str(image))

    _open(browser, serve("--model", str(model), "--bundle", "tgcnet_ct_organs"), "tgcnet_ct_organs")
    browser.find_element(By.ID, "image").send_keys(str(image))  # no prompt: every organ
    browser.find_element(By.ID, "run").click()
    slider = _wait(browser, lambda d: d.find_element(By.ID, "slice").is_displayed() and d.find_element(By.ID, "slice"))
    assert slider.get_attribute("max") == str(volume.shape[2] - 1)
    overlay = browser.find_element(By.ID, "overlay-0")
    first, number = overlay.get_attribute("src"), browser.find_element(By.ID, "slice-number").text
    slider.send_keys(Keys.ARROW_LEFT if int(number) > 0 else Keys.ARROW_RIGHT)
    _wait(browser, lambda d: d.find_element(By.ID, "slice-number").text != number, 10)
    assert overlay.get_attribute("src") != first  # another slice's overlay
    assert browser.find_element(By.ID, "mask-0").get_attribute("download") == "ct_1_seg.nii.gz"
