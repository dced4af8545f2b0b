"""The console in a real browser, for the tests: Debian's chromium, headless, driven by Selenium
through chromium-driver (both installed by scripts/setup-browser), and a walk through the pages
that checks every control's label and axe-core's WCAG 2 A/AA rules on each page it opens, and saves
screenshots when PDP_CONSOLE_SCREENSHOTS names a folder."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.wait import WebDriverWait

ROOT = Path(__file__).resolve().parents[3]
CHROMIUM = shutil.which("chromium")
DRIVER = shutil.which("chromedriver")
AXE_VERSION = "4.14.1"  # scripts/setup-browser installs this one from npm
CACHE = Path(
    os.environ.get("GPUPAAS_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gpupaas"
)
AXE = CACHE / "axe-core" / AXE_VERSION / "node_modules" / "axe-core" / "axe.min.js"
needs_browser = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None or not AXE.exists(),
    reason="chromium, chromedriver or axe-core are not installed (scripts/setup-browser installs them)",
)
# axe-core's WCAG 2 A and AA rules on the page; the violations, each with its rule and nodes.
RUN_AXE = """
const done = arguments[arguments.length - 1];
axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa']}})
  .then(r => done(r.violations.map(v => ({id: v.id, help: v.help, nodes: v.nodes.map(n => n.html)}))))
  .catch(e => done([{id: 'axe-error', help: String(e), nodes: []}]));
"""
# Controls with no label of their own: hidden fields carry no user input.
UNLABELLED = """
return Array.from(document.querySelectorAll('input:not([type=hidden]), select, textarea'))
  .filter(el => !(el.id && document.querySelector('label[for="' + el.id + '"]')) && !el.closest('label'))
  .map(el => el.outerHTML);
"""


@contextlib.contextmanager
def chromium() -> Iterator[WebDriver]:
    """Headless Chromium through chromium-driver, closed at the end of the block."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=str(DRIVER)), options=options)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


class Walk:
    def __init__(self, driver: WebDriver, url: str) -> None:
        self.driver = driver
        self.url = url
        folder = os.environ.get("PDP_CONSOLE_SCREENSHOTS")
        self.shots = (ROOT / folder) if folder else None
        if self.shots:
            self.shots.mkdir(parents=True, exist_ok=True)

    def open(self, path: str) -> None:
        self.driver.get(self.url + path)
        self.check_labels()

    def text(self) -> str:
        return str(self.driver.find_element(By.TAG_NAME, "body").text)

    def check_labels(self) -> None:
        """Every control labelled, and axe-core finds no WCAG 2 A/AA violation on the page."""
        unlabelled = self.driver.execute_script(UNLABELLED)
        assert unlabelled == [], f"controls without a label on {self.driver.current_url}: {unlabelled}"
        self.driver.execute_script(AXE.read_text())
        violations = self.driver.execute_async_script(RUN_AXE)
        assert violations == [], f"axe-core on {self.driver.current_url}: {violations}"

    def shot(self, name: str) -> None:
        if self.shots:
            height = self.driver.execute_script("return document.documentElement.scrollHeight")
            # The window's own frame takes part of its height (about 140 px in headless Chromium):
            # without it the foot of a long page is cut off.
            frame = self.driver.execute_script("return window.outerHeight - window.innerHeight")
            self.driver.set_window_size(1280, max(1000, int(height) + int(frame) + 40))
            self.driver.save_screenshot(str(self.shots / f"{name}.png"))
            self.driver.set_window_size(1280, 1000)

    def sign_in(self, account: str, token: str) -> None:
        self.open("/console/login")
        self.driver.find_element(By.ID, "account").send_keys(account)
        field = self.driver.find_element(By.ID, "token")
        field.send_keys(token)
        self.submit_with_enter(field)  # the keyboard alone signs in
        assert "/console/login" not in self.driver.current_url, self.text()

    def sign_out(self) -> None:
        self.submit_with_enter(self.driver.find_element(By.CSS_SELECTOR, "form.logout button"))
        assert self.driver.current_url.endswith("/console/login")

    def fill(self, values: dict[str, str]) -> None:
        for name, value in values.items():
            element = self.driver.find_element(By.ID, name)
            if element.tag_name == "select":
                Select(element).select_by_value(value)
            else:
                element.clear()
                element.send_keys(value)

    def press(self, action: str) -> None:
        """Tab from the form's first control to the button, and press it with the keyboard."""
        self.driver.find_element(By.CSS_SELECTOR, "main form input:not([type=hidden])").click()
        for _ in range(20):
            active = self.driver.switch_to.active_element
            if active.get_attribute("value") == action and active.tag_name == "button":
                self.submit_with_enter(active)
                return
            active.send_keys(Keys.TAB)
        raise AssertionError(f"the {action} button is not reachable with Tab")

    def submit_with_enter(self, control: WebElement) -> None:
        """Press Enter on `control` and wait until the next page replaced this one (the mark left
        on this page's window is gone with it)."""
        self.driver.execute_script("window.consoleTestOldPage = true")
        control.send_keys(Keys.ENTER)

        def replaced(driver: WebDriver) -> bool:
            try:
                return bool(
                    driver.execute_script(
                        "return window.consoleTestOldPage === undefined && document.readyState === 'complete'"
                    )
                )
            except WebDriverException:  # between the two pages
                return False

        WebDriverWait(self.driver, 60).until(replaced)
        self.check_labels()

    def wait_for(self, ready: object, what: str = "the page", timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not ready():  # type: ignore[operator]
            assert time.monotonic() < deadline, f"{what} did not happen: {self.text()[:2000]}"
            time.sleep(0.2)
