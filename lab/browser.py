"""Headless Chromium for the lab's screenshots (lab/*-screenshot.py) and the
default scenario's Flower test (molecule/default/tests/test_flower.py).

Debian's chromium and chromedriver (scripts/bootstrap installs both), given by
path: Selenium Manager downloads nothing. The page's viewport is exactly
width x height (--window-size counts the window, not the page);
viewport(driver, width, height) changes it, e.g. to the page's full height
before a screenshot.
"""

from __future__ import annotations

import pathlib

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--hide-scrollbars"]
WIDTH, HEIGHT = 1400, 900


def viewport(driver, width: int = WIDTH, height: int = HEIGHT) -> None:
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})


def chrome(page_timeout: float = 30):
    """A started headless Chromium (the caller quits it); a missing binary is an error that says what installs it."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for path in (CHROMIUM, CHROMEDRIVER):
        if not pathlib.Path(path).exists():
            raise RuntimeError(f"{path} missing: scripts/bootstrap installs chromium and chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS + [f"--window-size={WIDTH},{HEIGHT}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(page_timeout)
    driver.set_script_timeout(page_timeout)
    viewport(driver)
    return driver
