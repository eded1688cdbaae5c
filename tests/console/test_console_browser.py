"""The operator console in a real browser: headless Chromium (Debian's package, driven by Selenium
through Debian's chromedriver) against the console app served by a real uvicorn under load.

Skips when chromium, chromedriver or selenium is absent, except in CI (CI=true, or
ASGI_GUARD_REQUIRE_BROWSER=1 as `.ci/run` sets), where it fails: `.ci/run` installs them. The screenshot goes to tests/artifacts/console.png; with
ASGI_GUARD_UPDATE_DOCS_SCREENSHOT=1 it also replaces docs/assets/console.png (the docs' copy).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from asgi_guard_dev.valkey import free_port

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
DOCS_COPY = ROOT / "docs" / "assets" / "console.png"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
TOKEN = "browser-test-console-token"
LOAD_REQUESTS = 400  # bounded: the load stops at this count or after LOAD_SECONDS
LOAD_SECONDS = 20.0

pytestmark = pytest.mark.timeout(120)


def _missing() -> str | None:
    for path, what in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            return f"{what} is not installed (apt-get install -y chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    return None


@pytest.fixture(scope="module")
def browser_ready() -> None:
    reason = _missing()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true" or os.environ.get("ASGI_GUARD_REQUIRE_BROWSER") == "1":
        pytest.fail(f"the console's browser test must run in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture
def served(browser_ready: None, tmp_path: Path) -> Iterator[str]:
    """tests/console/console_served.py under uvicorn on a loopback port, console on at /_guard."""
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "ASGI_GUARD_CONSOLE_PATH": "/_guard",
        "ASGI_GUARD_CONSOLE_TOKEN": TOKEN,
        "ASGI_GUARD_METRICS_PATH": "",
        "ASGI_GUARD_OUTBOX_PATH": str(tmp_path / "outbox.sqlite3"),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "tests.console.console_served:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{base}/catalog", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode() if proc.stderr else ""
                pytest.fail(f"uvicorn did not start: {err[-2000:]}")
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Load(threading.Thread):
    """Background traffic: allowed, 429 (per item), 401 (no JWT), cache hits, a failing route,
    events (to the outbox)."""

    def __init__(self, base: str) -> None:
        super().__init__(daemon=True)
        self.base = base
        self.stop = threading.Event()
        self.sent = 0
        self.statuses: dict[int, int] = {}

    def run(self) -> None:
        paths = ["/items/{}", "/items/{}", "/catalog", "/account", "/report", "/flaky", "/items/hot"]
        deadline = time.monotonic() + LOAD_SECONDS
        with httpx.Client(base_url=self.base, timeout=5) as client:
            while self.sent < LOAD_REQUESTS and not self.stop.is_set() and time.monotonic() < deadline:
                path = paths[self.sent % len(paths)].format(self.sent % 5)
                if self.sent % 15 == 0:
                    status = client.post("/orders", json={"n": self.sent}).status_code
                else:
                    status = client.get(path).status_code
                self.statuses[status] = self.statuses.get(status, 0) + 1
                self.sent += 1
                time.sleep(0.02)


def _driver(tmp_path: Path):  # type: ignore[no-untyped-def]
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


def _docs_copy(shot: Path) -> None:
    """The committed copy, palette-reduced when Pillow is there (a third of the size)."""
    DOCS_COPY.parent.mkdir(parents=True, exist_ok=True)
    try:
        from PIL import Image
    except ImportError:
        shutil.copyfile(shot, DOCS_COPY)
        return
    with Image.open(shot) as image:
        image.convert("RGB").quantize(colors=64).save(DOCS_COPY, optimize=True)


def _number(driver, element_id: str) -> int:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    text = driver.find_element(By.ID, element_id).text.strip()
    return int(text) if text.isdigit() else -1


def test_console_shows_live_numbers_in_chromium(served: str, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    load = Load(served)
    load.start()
    driver = _driver(tmp_path)
    try:
        driver.set_page_load_timeout(20)
        driver.get(f"{served}/_guard/")  # no credential: the login form
        assert driver.current_url.endswith("/_guard/login")
        driver.find_element(By.NAME, "token").send_keys(TOKEN)
        driver.find_element(By.CSS_SELECTOR, "form button").click()
        wait = WebDriverWait(driver, 15)
        wait.until(lambda d: d.current_url.endswith("/_guard/") and _number(d, "requests") > 0)

        first = _number(driver, "requests")
        wait.until(lambda d: _number(d, "requests") > first + 10)  # the page polls: numbers move
        second = _number(driver, "requests")
        assert second > first
        wait.until(
            lambda d: _number(d, "s4xx") > 0 and "rate_limited" in d.find_element(By.ID, "decisions").text
        )
        assert "%" in driver.find_element(By.ID, "cache-ratio").text
        assert "items ~127.0.0.1" in driver.find_element(By.ID, "limited").text
        wait.until(lambda d: "open" in d.find_element(By.ID, "circuits").text)
        wait.until(lambda d: _number(d, "outbox-depth") > 0)  # no Pulsar: events wait in the outbox
        assert "/items/{resource_id}" in driver.find_element(By.TAG_NAME, "main").text

        driver.find_element(By.NAME, "user").send_keys("127.0.0.1")
        driver.find_element(By.CSS_SELECTOR, "#credit-form button").click()
        wait.until(lambda d: "credits" in d.find_element(By.ID, "credit-out").text)

        # nothing was fetched from anywhere but the app itself (no CDN, no fonts)
        fetched = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert fetched and all(url.startswith(served) for url in fetched), fetched

        time.sleep(1.2)  # one more poll, so the shot shows the latest numbers
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / "console.png"
        assert driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        if os.environ.get("ASGI_GUARD_UPDATE_DOCS_SCREENSHOT") == "1":
            _docs_copy(shot)
    finally:
        driver.quit()
        load.stop.set()
        load.join(30)
    assert load.sent > 0 and load.statuses.get(429, 0) > 0 and load.statuses.get(401, 0) > 0
