"""deploy/app.py in a real browser: Debian's Chromium, driven by Selenium (requirements-dev.txt),
against `python -m deploy.app` on a free port. Pick a test image, draw a box and click a point with
the mouse, wait for the answer; SAMA's mask differs from SAM's, the downloads are predict.py's
PNGs, and a screenshot is saved in the test's temporary folder.

.ci/run installs chromium and chromium-driver where they are missing; elsewhere, without them, the
test is skipped (under CI it fails instead)."""

import base64
import io
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import data
import predict
from miniature import synthetic

REPO = Path(__file__).resolve().parent.parent
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
EXAMPLE = "DIS-TE1_0000.jpg"  # thin lines from a hub: SAM's quarter-resolution mask misses them

if not (CHROMIUM and CHROMEDRIVER):
    if os.environ.get("CI"):
        pytest.fail("chromium and chromium-driver are missing (.ci/run installs them)",
                    pytrace=False)
    pytest.skip("needs chromium and chromium-driver (apt-get install -y chromium chromium-driver)",
                allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402


@pytest.fixture()
def address(tmp_path):
    """`python -m deploy.app --port 0` (the shipped stand-in), started from another folder (the
    repository on PYTHONPATH)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "deploy.app", "--port", "0", "--examples", "examples"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = process.stdout.readline()  # "serving SAMA (...) on http://127.0.0.1:PORT/ ..."
    try:
        assert " on http://127.0.0.1:" in line, line + process.stdout.read()
        yield line.split(" on ", 1)[1].split()[0]
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture()
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1300,760"):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {
        "download.default_directory": str(tmp_path / "downloads"),
        "download.prompt_for_download": False,
    })
    driver = webdriver.Chrome(options=options,
                              service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    yield driver
    driver.quit()


def png(data_url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))))


def mouse_to(actions: ActionChains, canvas, x: float, y: float, width: int) -> ActionChains:
    """Move to image pixel (x, y) of the displayed canvas (Selenium's offsets: from its centre)."""
    scale = canvas.rect["width"] / width
    return actions.move_to_element_with_offset(canvas, round(x * scale - canvas.rect["width"] / 2),
                                               round(y * scale - canvas.rect["height"] / 2))


def test_draw_a_box_and_a_point_then_download(address, browser, tmp_path):
    browser.get(address)
    wait = WebDriverWait(browser, 60)
    wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#examples option")) > 1)
    Select(browser.find_element(By.ID, "examples")).select_by_value(EXAMPLE)
    wait.until(lambda b: EXAMPLE in b.find_element(By.ID, "image-title").text)

    gt = synthetic.thin_pair(0, "DIS-TE1", 0)[1]  # the structure's box, as evaluate.py prompts
    h, w = gt.shape
    x0, y0, x1, y1 = data.mask_to_box(gt > 0)
    canvas = browser.find_element(By.ID, "prompt")
    drag = mouse_to(ActionChains(browser), canvas, x0, y0, w).click_and_hold()
    for t in (0.3, 0.6, 1.0):  # the page prompts while the box is drawn
        drag = mouse_to(drag, canvas, x0 + t * (x1 - x0), y0 + t * (y1 - y0), w)
    drag.release().perform()
    cx, cy = np.argwhere(gt > 0)[len(np.argwhere(gt > 0)) // 2][::-1]  # a pixel of the structure
    mouse_to(ActionChains(browser), canvas, cx, cy, w).click().perform()

    def answered(b):
        return b.execute_script("return state.points.length === 1 && shown === sent ? "
                                "[state.box, state.points, state.labels] : null")

    box, points, labels = wait.until(answered)
    assert labels == [1] and box[0] < box[2] and box[1] < box[3]
    assert browser.find_element(By.ID, "error").text == ""
    sam = png(browser.find_element(By.ID, "sam-png").get_attribute("src"))
    mask = png(browser.find_element(By.ID, "mask-png").get_attribute("src"))
    assert sam.shape == mask.shape == (h, w)
    assert (mask > 0).sum() > 0 and not np.array_equal(sam, mask)  # SAMA's mask is not SAM's
    times = browser.find_element(By.ID, "times").text
    assert "image encoded in" in times and "this prompt:" in times, times

    for name in ("mask", "cutout"):
        browser.find_element(By.ID, f"download-{name}").click()
    downloads = tmp_path / "downloads"
    wanted = [downloads / f"{Path(EXAMPLE).stem}_{name}.png" for name in ("mask", "cutout")]
    deadline = time.time() + 30
    while not all(p.is_file() for p in wanted) and time.time() < deadline:
        time.sleep(0.1)
    argv = [str(tmp_path / "examples" / EXAMPLE), "--out", str(tmp_path / "predicted"),
            "--checkpoint", str(REPO / "weights" / "sama_standin.pt"),
            "--sam-checkpoint", str(REPO / "weights" / "sam_standin.pth"),
            "--box", *map(str, box), "--point", *map(str, points[0])]
    assert predict.main(argv) == 0
    for path, name in zip(wanted, ("mask", "cutout")):
        assert path.read_bytes() == (tmp_path / f"predicted_{name}.png").read_bytes(), name
    shown = png(browser.find_element(By.ID, "cutout-png").get_attribute("src"))  # the alpha panel's
    assert np.array_equal(shown, np.asarray(Image.open(wanted[1])))
    assert "the cutout's colours:" in times, times
    browser.save_screenshot(str(tmp_path / "app.png"))
    print(f"screenshot: {tmp_path / 'app.png'}; {times}")

    browser.find_element(By.ID, "undo").click()  # the point goes, the box stays
    wait.until(lambda b: b.execute_script("return state.points.length === 0 && shown === sent"))
    assert browser.execute_script("return state.box") == box
    browser.find_element(By.ID, "clear").click()  # nothing left to show or download
    wait.until(lambda b: not b.find_element(By.ID, "download-mask").is_displayed())
    assert browser.execute_script("return [state.box, state.points, shown]") == [None, [], -1]

    notes = tmp_path / "notes.txt"  # an upload that is not an image: one line on the page
    notes.write_text("not an image")
    browser.find_element(By.ID, "upload").send_keys(str(notes))
    wait.until(lambda b: b.find_element(By.ID, "error").text)
    assert browser.find_element(By.ID, "error").text == (
        "notes.txt: not an image this app can read (UnidentifiedImageError)")


def test_every_object_button_lists_and_draws_the_objects(address, browser, tmp_path):
    """Upload a drawn scene of several objects, press "Every object": the list holds one line per
    object the endpoint found, with its downloads; the view is drawn (the screenshot of
    deploy/app.png, saved in the test's folder)."""
    from miniature.everything_study import TEST_SEEDS, scene

    path = tmp_path / "scene.png"
    Image.fromarray(scene(TEST_SEEDS[5])[0]).save(path)  # four solid objects
    browser.get(address)
    wait = WebDriverWait(browser, 300)
    browser.find_element(By.ID, "upload").send_keys(str(path))
    wait.until(lambda b: "scene.png" in b.find_element(By.ID, "image-title").text)
    assert not browser.find_element(By.ID, "everything").is_displayed()
    browser.find_element(By.ID, "everything-button").click()
    wait.until(lambda b: b.find_element(By.ID, "everything").is_displayed())
    assert browser.find_element(By.ID, "error").text == ""
    items = browser.find_elements(By.CSS_SELECTOR, "#objects-list li")
    assert len(items) >= 1
    assert "predicted IoU" in items[0].text and "stability" in items[0].text
    links = items[0].find_elements(By.TAG_NAME, "a")
    assert [a.get_attribute("download") for a in links] == [
        f"scene_0_{name}.png" for name in ("mask", "alpha", "cutout")]
    title = browser.find_element(By.ID, "everything-title").text
    assert title.startswith(f"Every object: {len(items)},"), title
    assert "every object:" in browser.find_element(By.ID, "times").text
    # the view: the image with the objects tinted, not the image alone
    drawn = browser.execute_script(
        "const c = $('objects-view'); return [c.width, c.height, "
        "Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)]")
    w, h, rgba = drawn
    shown = np.asarray(rgba, dtype=np.uint8).reshape(h, w, 4)[..., :3]
    assert not np.array_equal(shown, np.asarray(Image.open(path).convert("RGB")))
    browser.set_window_size(1300, 1000)
    browser.execute_script("$('everything').scrollIntoView()")
    browser.save_screenshot(str(tmp_path / "app.png"))
    print(f"screenshot: {tmp_path / 'app.png'}")
