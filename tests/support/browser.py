"""Headless Chromium from Debian's package (``chromium``, ``chromium-driver``), driven with
selenium through the packaged chromedriver: nothing is downloaded (Selenium Manager is kept
offline). :func:`chromium` yields a driver, or skips the test with the reason when the
browser is not installed (``.ci/run`` installs it)."""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

__all__ = ["SCREENSHOTS", "chromium", "screenshot"]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
#: Where screenshots go when ``AZTP_SCREENSHOTS=1`` (docs/console.md shows them).
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "img"


@contextmanager
def chromium(width: int = 1280, height: int = 900) -> Iterator[Any]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()) and not (
        shutil.which("chromium") and shutil.which("chromedriver")
    ):
        pytest.skip("headless Chromium is not installed: apt-get install chromium chromium-driver")
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager download
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM if Path(CHROMIUM).exists() else str(shutil.which("chromium"))
    for arg in (
        "--headless=new",
        "--no-sandbox",  # root in CI containers
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-extensions",
        f"--window-size={width},{height}",
    ):
        options.add_argument(arg)
    driver_path = CHROMEDRIVER if Path(CHROMEDRIVER).exists() else str(shutil.which("chromedriver"))
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver: Any, name: str) -> None:
    """Save the page as ``docs/img/console-NAME.png`` when ``AZTP_SCREENSHOTS=1`` (CI does not
    set it, so a test run does not change the tree)."""
    if os.environ.get("AZTP_SCREENSHOTS") != "1":
        return
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    # the whole page (not only the viewport), through the DevTools protocol
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 1800), "scale": 1}
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
    )
    (SCREENSHOTS / f"console-{name}.png").write_bytes(base64.b64decode(shot["data"]))
