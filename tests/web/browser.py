"""Headless Chromium (Debian's ``chromium`` and ``chromium-driver``) driven by selenium, for the console's browser
tests. Selenium blocks, and the fakes serve from the test's own event loop, so every browser call runs in a thread
(``asyncio.to_thread``) and the loop keeps answering the daemon's provider calls meanwhile.

Without chromium the browser tests skip, except under CI (``CI`` set), where they fail: CI installs it
(``.ci/run``), so a missing browser there is a broken setup, not a reason to pass.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

T = TypeVar("T")

AXE = Path(__file__).parent / "vendor" / "axe.min.js"
#: axe-core impacts that fail a page
FAILING_IMPACTS = frozenset({"serious", "critical"})
WAIT_SECONDS = 30.0


def chromium_paths() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        missing = "chromium" if browser is None else "chromedriver (Debian's chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(f"{missing} is not installed: CI must run the console's browser tests (.ci/run installs it)")
        pytest.skip(f"{missing} is not installed; apt-get install chromium chromium-driver to run the browser tests")
    return browser, driver


class Browser:
    """One browser session (its own cookies): pages by path below the daemon's URL, screenshots, axe checks."""

    def __init__(self, base: str, shots: Path, *, javascript: bool = True, width: int = 1280, height: int = 1000):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        browser, driver = chromium_paths()
        options = webdriver.ChromeOptions()
        options.binary_location = browser
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
            options.add_argument(arg)
        options.add_argument(f"--window-size={width},{height}")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        if not javascript:
            options.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
        self.driver = webdriver.Chrome(service=Service(driver), options=options)
        self.base = base
        self.shots = shots
        self.javascript = javascript
        self.checked: list[str] = []
        self.checker: Browser | None = None
        shots.mkdir(parents=True, exist_ok=True)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(fn, *args)

    async def close(self) -> None:
        await self.run(self.driver.quit)

    # --- pages -------------------------------------------------------------------------------

    async def open(self, path: str) -> None:
        await self.run(self.driver.get, self.base + path)

    @property
    def path(self) -> str:
        url = str(self.driver.current_url)
        return url[len(self.base) :] if url.startswith(self.base) else url

    async def wait(self, check: Callable[[], T | None], what: str, timeout: float = WAIT_SECONDS) -> T:
        """Until ``check`` (run in the browser's thread) gives something (a boosted page swaps its body late)."""

        def poll() -> T:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    found = check()
                except Exception:  # e.g. an element replaced while it was read
                    found = None
                if found is not None and found is not False:
                    return found
                if time.monotonic() > deadline:
                    raise AssertionError(f"not within {timeout} s: {what} (at {self.path}):\n{self.page_text()[:3000]}")
                time.sleep(0.1)

        return await self.run(poll)

    def page_text(self) -> str:
        from selenium.webdriver.common.by import By

        try:
            return str(self.driver.find_element(By.TAG_NAME, "body").text)
        except Exception:
            return ""

    async def heading(self, text: str) -> None:
        """Wait until the page's h1 contains ``text``."""
        from selenium.webdriver.common.by import By

        def found() -> bool:
            return text in self.driver.find_element(By.TAG_NAME, "h1").text

        await self.wait(found, f"a page whose heading says {text!r}")

    async def text(self, css: str) -> str:
        from selenium.webdriver.common.by import By

        return await self.wait(lambda: self.driver.find_element(By.CSS_SELECTOR, css).text or None, f"text of {css}")

    async def has(self, css: str) -> bool:
        from selenium.webdriver.common.by import By

        return bool(await self.run(self.driver.find_elements, By.CSS_SELECTOR, css))

    async def click(self, css: str) -> None:
        from selenium.webdriver.common.by import By

        def do() -> bool:
            self.driver.find_element(By.CSS_SELECTOR, css).click()
            return True

        await self.wait(do, f"a clickable {css}")

    async def fill(self, css: str, value: str) -> None:
        from selenium.webdriver.common.by import By

        def do() -> bool:
            field = self.driver.find_element(By.CSS_SELECTOR, css)
            field.clear()
            field.send_keys(value)
            return True

        await self.wait(do, f"a field {css}")

    async def sign_in(self, token: str) -> None:
        await self.open("/ui/keys")
        await self.heading("Sign in")
        await self.fill("#token", token)
        await self.click("form.card button[type=submit]")
        await self.heading("Managed keys")

    # --- evidence ----------------------------------------------------------------------------

    async def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        await self.run(self.driver.save_screenshot, str(path))
        return path

    async def axe(self, name: str) -> None:
        """axe-core on the page as shown: no serious or critical violation (each named with its elements)."""
        source = AXE.read_text(encoding="utf-8")

        def check() -> list[dict[str, Any]]:
            self.driver.execute_script(source)
            result = self.driver.execute_async_script(
                "const done = arguments[arguments.length - 1];"
                "axe.run(document, {resultTypes: ['violations']})"
                ".then(r => done(r.violations)).catch(e => done([{id: 'axe-failed', impact: 'critical', "
                "help: String(e), nodes: []}]));"
            )
            return list(result)

        violations = await self.run(check)
        bad = [v for v in violations if v.get("impact") in FAILING_IMPACTS]
        described = [
            f"{v['id']} ({v['impact']}): {v['help']} at {[n.get('target') for n in v.get('nodes', [])][:5]}"
            for v in bad
        ]
        assert not bad, f"axe-core on {name} ({self.path}):\n" + "\n".join(described)
        self.checked.append(name)

    async def look(self, name: str) -> None:
        """A screenshot and the axe check of the page shown now. axe-core runs asynchronously, which a page without
        JavaScript cannot: there, ``checker`` (a browser with JavaScript, signed in as the same user) opens the same
        page and is checked instead."""
        await self.shot(name)
        if self.javascript:
            await self.axe(name)
            return
        assert self.checker is not None, "a browser without JavaScript needs a checker for axe-core"
        await self.checker.open(self.path)
        await self.checker.axe(name)
        self.checked.append(name)
