"""The dashboard in a real browser: headless Chromium (Debian's, /usr/bin/chromium, or
$FLAGLOG_CHROMIUM) driven by Playwright, against a live flaglog with no user yet, on both
backends.

A new user creates the first administrator, then an organisation, a project, an environment and
a flag, turns the flag on, and the real Flagsmith Python SDK, given the key the page shows, sees
it on; the evaluations it reports show on the feature's chart. Then four-eyes with people in their own browser contexts: the author proposes, cannot
approve, the proposal appears in the approver's open inbox without a reload, the approver
approves, the author commits, the SDK serves it and the audit page shows
both names; a viewer sees no edit control and a forged POST (no CSRF token, or the viewer's
session) is refused with 403. No page logs a console error; each page is saved as a screenshot
under target/screenshots/ at desktop and phone widths, for review.
"""

import os
import re
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

    # The SDK reports its evaluations; the feature's chart shows them.
    counting = Flagsmith(environment_key=key, api_url=server.api_url, enable_analytics=True)
    flags = counting.get_environment_flags()
    for _ in range(7):
        assert flags.is_feature_enabled("checkout_v2")
    counting._analytics_processor.flush()
    page.get_by_role("link", name="checkout_v2").first.click()
    page.wait_for_url("**/features/*")
    chart = page.locator("figure.chart figcaption").first.inner_text()
    assert "7 evaluations" in chart, chart
    assert page.locator("figure.chart rect title", has_text=": 7 evaluations").count() == 1
    visit.shoot("feature")

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/login")
    visit.shoot("sign-in")
    page.goto(server.base + "/")
    assert page.url.endswith("/login"), page.url
    assert visit.errors == [], f"console errors: {visit.errors}"


def sdk_sees(server, key, feature, enabled=True):
    """Whether the Flagsmith Python SDK sees `feature` as `enabled` within SERVED_SECONDS."""
    sdk = Flagsmith(environment_key=key, api_url=server.api_url)
    deadline = time.monotonic() + SERVED_SECONDS
    while time.monotonic() < deadline:
        try:
            if sdk.get_environment_flags().is_feature_enabled(feature) == enabled:
                return True
        except Exception:  # the projection may not have served the environment yet
            pass
        time.sleep(0.05)
    return False


def sign_in(visit, server, email, password="a long secret"):
    page = visit.page
    page.goto(server.base + "/login")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(server.base + "/")


def test_two_people_review_a_change_and_a_viewer_cannot_edit(fresh_flaglog, browser):
    server = fresh_flaglog
    admin = Visit(browser, server.backend, "review-admin")
    page = admin.page
    page.goto(server.base + "/setup")
    page.get_by_label("E-mail").fill("ada@example.com")
    page.get_by_label("Password (at least 8 characters)").fill("a long secret")
    page.get_by_role("button", name="Create the administrator").click()
    page.wait_for_url(server.base + "/")
    shop = page.get_by_label(re.compile("New project in"))
    shop.fill("Shop")
    shop.press("Enter")
    page.wait_for_url("**/projects/*")
    project_url = page.url
    page.get_by_label("New environment").fill("Production")
    page.get_by_role("button", name="Create environment").click()
    page.wait_for_load_state()
    page.get_by_label("New feature").fill("banner")
    page.get_by_role("button", name="Create feature").click()
    page.wait_for_load_state()
    key = page.locator("code.key").first.inner_text()
    page.get_by_role("link", name="Settings").click()
    page.get_by_label("Approvals a change in Production needs (0: none)").fill("1")
    page.get_by_role("button", name="Save Production settings").click()
    page.wait_for_load_state()

    # People and roles, through the users page.
    page.get_by_role("link", name="Users").click()
    for email in ["bob@example.com", "cy@example.com", "vi@example.com"]:
        page.get_by_label("E-mail").fill(email)
        page.get_by_label("Password (at least 8 characters)").fill("a long secret")
        page.get_by_role("button", name="Add").click()
        page.wait_for_load_state()
        assert "shown this once" in page.content()
        page.goto(server.base + "/users")
    for email, role in [
        ("bob@example.com", "editor"),
        ("cy@example.com", "approver"),
        ("vi@example.com", "viewer"),
    ]:
        page.get_by_label("Person").select_option(label=email)
        page.get_by_label("Project").select_option(label="Shop")
        page.get_by_label("Role").select_option(value=role)
        page.get_by_role("button", name="Set the role").click()
        page.wait_for_url(server.base + "/users")
    assert "approver on Shop" in page.content()
    admin.shoot("users")
    for path, label in [("/tokens", "tokens"), ("/usage", "usage"), ("/audit/verify", "verify")]:
        page.goto(server.base + path)
        assert page.url.endswith(path), page.url
        admin.shoot(label)
    assert "Intact: positions 1 to" in page.content()

    # The approver watches the inbox: it updates live, without a reload.
    cy = Visit(browser, server.backend, "review-approver")
    sign_in(cy, server, "cy@example.com")
    cy.page.get_by_role("link", name="Change requests").click()
    cy.page.wait_for_url("**/change-requests")
    assert "Nothing waits for review" in cy.page.content()

    # The author proposes; they cannot approve their own request.
    bob = Visit(browser, server.backend, "review-author")
    sign_in(bob, server, "bob@example.com")
    bob.page.goto(project_url)
    assert bob.page.get_by_role("button", name="Turn on banner in Production").count() == 0
    bob.page.get_by_role("button", name="Propose turning on banner in Production").click()
    bob.page.wait_for_url("**/change-requests/*")
    request_url = bob.page.url
    assert "0 of 1" in bob.page.content()
    assert bob.page.get_by_role("button", name="Approve").count() == 0
    bob.shoot("request")

    # The approver's inbox shows it without a reload; they approve.
    proposal = cy.page.get_by_role("link", name="Turn on banner in Production")
    proposal.wait_for(timeout=15_000)
    assert cy.page.url.endswith("/change-requests")
    cy.shoot("inbox")
    proposal.click()
    cy.page.get_by_role("button", name="Approve").click()
    cy.page.wait_for_load_state()
    assert "1 of 1" in cy.page.content()

    # The author commits; the SDK serves it; the audit page shows both people.
    bob.page.goto(request_url)
    bob.page.get_by_role("button", name="Commit").click()
    bob.page.wait_for_load_state()
    assert "committed" in bob.page.content()
    assert sdk_sees(server, key, "banner"), f"{server.backend}: banner is not served on"
    bob.page.get_by_role("link", name="Audit log").click()
    bob.page.wait_for_url("**/audit")
    audit = bob.page.content()
    assert "bob@example.com" in audit and "approved by cy@example.com" in audit
    bob.shoot("audit")

    # A viewer sees no edit control; forged POSTs are refused.
    vi = Visit(browser, server.backend, "review-viewer")
    sign_in(vi, server, "vi@example.com")
    vi.page.goto(project_url)
    assert vi.page.get_by_role("button", name=re.compile("Turn|Propose")).count() == 0
    assert vi.page.get_by_label("New feature").count() == 0
    bob.page.goto(project_url)
    proposal = bob.page.locator("form.toggle").first.get_attribute("action")
    csrf = vi.page.locator("input[name=csrf]").first.get_attribute("value")
    # The viewer's own session and token: refused for the role.
    forged = vi.page.request.post(
        server.base + proposal, form={"csrf": csrf, "enabled": "false"}
    )
    assert forged.status == 403, forged.text()
    # The editor's session without the token: refused before anything is read.
    no_token = bob.page.request.post(server.base + proposal, form={"enabled": "false"})
    assert no_token.status == 403, no_token.text()
    vi.shoot("project")

    for visit in (admin, bob, cy, vi):
        assert visit.errors == [], f"{visit.name}: console errors: {visit.errors}"
