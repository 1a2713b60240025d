"""The dashboard in a real browser: headless Chromium (Debian's, /usr/bin/chromium, or
$FLAGLOG_CHROMIUM) driven by Playwright, against a live flaglog with no user yet, on both
backends.

A new user creates the first administrator, then an organisation, a project, an environment and
a flag, turns the flag on, and the real Flagsmith Python SDK, given the key the page shows, sees
it on. No page logs a console error; each page is saved as a screenshot under
target/screenshots/ at desktop and phone widths, for review. Signing out takes the visitor back
to the sign-in page.
"""

import os
import time
from pathlib import Path

import pytest
from flagsmith import Flagsmith
from playwright.sync_api import sync_playwright

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "target" / "screenshots"
WIDTHS = {"desktop": (1280, 800), "phone": (390, 844)}
SERVED_SECONDS = 15


def chromium_path():
    path = os.environ.get("FLAGLOG_CHROMIUM", "/usr/bin/chromium")
    if not Path(path).is_file():
        pytest.fail(
            f"no Chromium at {path}: apt-get install chromium (or set FLAGLOG_CHROMIUM)"
        )
    return path


@pytest.fixture
def browser():
    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium's sandbox cannot start.
        launched = playwright.chromium.launch(
            executable_path=chromium_path(), args=["--no-sandbox"]
        )
        try:
            yield launched
        finally:
            launched.close()


class Visit:
    """One browser context (a visitor with their own cookies) that records console errors and
    saves a screenshot of each page it reaches."""

    def __init__(self, browser, backend, name):
        self.context = browser.new_context(viewport=dict(zip(("width", "height"), WIDTHS["desktop"])))
        self.page = self.context.new_page()
        self.errors = []
        self.page.on(
            "console",
            lambda message: message.type == "error" and self.errors.append(message.text),
        )
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.backend = backend
        self.name = name

    def shoot(self, label):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        for width_name, (width, height) in WIDTHS.items():
            self.page.set_viewport_size({"width": width, "height": height})
            self.page.screenshot(
                path=SCREENSHOTS / f"{self.name}-{label}-{width_name}-{self.backend}.png",
                full_page=True,
            )
        self.page.set_viewport_size(dict(zip(("width", "height"), WIDTHS["desktop"])))


def test_a_new_user_creates_a_flag_in_the_browser_and_the_python_sdk_sees_it(
    fresh_flaglog, browser
):
    server = fresh_flaglog
    visit = Visit(browser, server.backend, "first-run")
    page = visit.page

    page.goto(server.base + "/")
    assert page.url.endswith("/setup"), page.url
    visit.shoot("setup")
    page.get_by_label("E-mail").fill("ada@example.com")
    page.get_by_label("Password (at least 8 characters)").fill("a long secret")
    page.get_by_role("button", name="Create the administrator").click()
    page.wait_for_url(server.base + "/")
    assert "ada@example.com" in page.content()

    page.get_by_label("New organisation").fill("Acme")
    page.get_by_role("button", name="Create organisation").click()
    page.wait_for_url(server.base + "/")
    visit.shoot("organisations")
    shop = page.get_by_label("New project in Acme")
    shop.fill("Shop")
    shop.press("Enter")
    page.wait_for_url("**/projects/*")
    page.get_by_label("New environment").fill("Production")
    page.get_by_role("button", name="Create environment").click()
    page.wait_for_load_state()
    page.get_by_label("New feature").fill("checkout_v2")
    page.get_by_role("button", name="Create feature").click()
    page.wait_for_load_state()
    assert page.locator("tr", has_text="checkout_v2").locator(".state").inner_text() == "Off"
    page.get_by_role("button", name="Turn on checkout_v2 in Production").click()
    page.wait_for_load_state()
    assert page.locator("tr", has_text="checkout_v2").locator(".state").inner_text() == "On"
    visit.shoot("project")
    key = page.locator("code.key").first.inner_text()

    # The real Python SDK, with the key the page shows, sees the flag on.
    sdk = Flagsmith(environment_key=key, api_url=server.api_url)
    deadline = time.monotonic() + SERVED_SECONDS
    enabled = False
    while time.monotonic() < deadline and not enabled:
        try:
            enabled = sdk.get_environment_flags().is_feature_enabled("checkout_v2")
        except Exception:  # the projection may not have served the environment yet
            enabled = False
        if not enabled:
            time.sleep(0.05)
    assert enabled, f"{server.backend}: the SDK does not see checkout_v2 on"

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/login")
    visit.shoot("sign-in")
    page.goto(server.base + "/")
    assert page.url.endswith("/login"), page.url
    assert visit.errors == [], f"console errors: {visit.errors}"
