"""`snakemake --report` on the test workflow, opened in a real headless Chromium (Debian's `chromium` and
`chromium-driver`, driven by Selenium; nothing is downloaded): the results table and the figures are there."""

from __future__ import annotations

import os
import shutil
import time

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.snakemake_runs import TEST_CONFIG, snakemake

pytestmark = pytest.mark.slow
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")
    if not (CHROMIUM and DRIVER):
        pytest.skip("Debian's chromium and chromium-driver are not installed (.ci/run installs them as root)")
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not look for a browser online
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(DRIVER), options=options)
    yield driver
    driver.quit()


def _wait(find, timeout: float = 20.0):
    """Poll until `find()` returns something truthy: the report is a single-page app that renders after load."""
    deadline = time.monotonic() + timeout
    while True:
        found = find()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def _open(driver, *names: str) -> None:
    from selenium.webdriver.common.by import By

    for name in names:
        _wait(lambda: driver.find_elements(By.XPATH, f"//*[text()='{name}']"))[0].click()


def test_the_report_shows_table_2_and_the_figures_in_a_browser(local_run, browser, tmp_path):
    from PIL import Image
    from selenium.webdriver.common.by import By

    snakemake(local_run, TEST_CONFIG, "--report", str(tmp_path / "report.html"))
    browser.get((tmp_path / "report.html").as_uri())
    assert _wait(lambda: browser.find_elements(By.XPATH, "//*[text()='3. Figures (report)']"))
    assert "RMA(H, M)" in browser.find_element(By.TAG_NAME, "body").text  # the workflow description

    _open(browser, "2. Tables (report)")
    row = _wait(lambda: browser.find_elements(By.XPATH, "//tr[td[text()='HTML']]"))[0]
    row.find_element(By.XPATH, ".//a[@iconname='eye']").click()
    frame = _wait(lambda: browser.find_elements(By.TAG_NAME, "iframe"))[0]
    browser.switch_to.frame(frame)
    table = browser.find_element(By.TAG_NAME, "body").text
    browser.switch_to.default_content()
    assert "Prediction trustworthiness" in table and "Inference reliability" in table
    metrics = pq.read_table(local_run / "results" / "metrics" / "rationality.parquet").to_pylist()
    zs = next(r for r in metrics if (r["method"], r["heatmap_method"]) == ("zs", "chefer"))
    accuracy = table.split("Accuracy", 1)[1]
    assert f"ZS tiny-clip {100 * zs['accuracy']:.1f} [" in accuracy

    _open(browser, "Results", "3. Figures (report)", "Galleries")
    shown = []
    for label in ("every method right", "right for the wrong reason"):
        row = _wait(lambda: browser.find_elements(By.XPATH, f"//tr[td[text()='{label}']]"))[0]
        row.find_element(By.XPATH, ".//a[@iconname='eye']").click()
        image = _wait(
            lambda: [
                i
                for i in browser.find_elements(By.TAG_NAME, "img")
                if i.get_attribute("src").startswith("data:image/png") and i.size["width"] > 300
            ]
        )
        assert image, f"the {label} gallery is not shown"
        shown.append(image[0].get_attribute("src"))
    assert shown[0] != shown[1]
    browser.save_screenshot(str(tmp_path / "report.png"))
    pixels = np.asarray(Image.open(tmp_path / "report.png").convert("RGB"))
    assert pixels.shape[:2] == (1000, 1400) or pixels.shape[1] >= 1000
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 500  # a drawn heatmap, not a blank page
