"""The dashboard in a real browser: headless Chromium (Debian's, /usr/bin/chromium, or
$FLAGLOG_CHROMIUM) driven by Playwright, against a live flaglog with no user yet, on both
backends.

A new user creates the first administrator, then an organisation, a project, an environment and
a flag, turns the flag on, and the real Flagsmith Python SDK, given the key the page shows, sees
it on; the evaluations it reports show on the feature's chart. Then four-eyes with people in their own browser contexts: the author proposes, cannot
approve, the proposal appears in the approver's open inbox without a reload, the approver
approves, the author commits, the SDK serves it and the audit page shows
both names; a viewer sees no edit control and a forged POST (no CSRF token, or the viewer's
session) is refused with 403. Then managing a flag: a value, a segment made with the rule builder
and its override, each served to the SDK; a flag turned on with the keyboard alone. No page logs
a console error, every control on every page has a label, and each page is saved as a screenshot
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
        """Saves the page at each width, and checks that every control on it has a label."""
        unlabelled = self.page.evaluate(UNLABELLED)
        assert unlabelled == [], f"{label}: controls without a label: {unlabelled}"
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


def shop_with_banner(page, server):
    """The first administrator (ada), then project Shop with environment Production and flag
    banner, made through the pages; returns the project's URL and the environment's key."""
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
    return project_url, page.locator("code.key").first.inner_text()


def test_two_people_review_a_change_and_a_viewer_cannot_edit(fresh_flaglog, browser):
    server = fresh_flaglog
    admin = Visit(browser, server.backend, "review-admin")
    page = admin.page
    project_url, key = shop_with_banner(page, server)
    page.get_by_role("link", name="Settings", exact=True).click()
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


UNLABELLED = """() => Array.from(document.querySelectorAll(
    'input:not([type=hidden]), select, textarea, button'))
  .filter(el => el.tagName === 'BUTTON'
    ? !(el.textContent.trim() || el.getAttribute('aria-label'))
    : !((el.labels && el.labels.length) || el.getAttribute('aria-label')))
  .map(el => el.outerHTML.slice(0, 160))"""


def test_flags_are_managed_in_the_browser_with_labelled_controls_and_the_keyboard(
    fresh_flaglog, browser
):
    """Editing a flag's value, a segment made with the rule builder and its override, through
    the pages' labelled controls; the SDK serves each. Every control on every page has a label;
    a flag is turned on with the keyboard alone."""
    server = fresh_flaglog
    visit = Visit(browser, server.backend, "manage")
    page = visit.page
    project_url, key = shop_with_banner(page, server)

    # The keyboard alone: tab to the toggle, press Enter.
    page.locator("body").focus()
    target = "Turn on banner in Production"
    for _ in range(80):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.getAttribute('aria-label')") == target:
            break
    else:
        pytest.fail("Tab never reached the toggle")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.locator("tr", has_text="banner").locator(".state").inner_text() == "On"

    # A value, from the feature page's state form.
    page.get_by_role("link", name="banner").first.click()
    page.wait_for_url("**/features/*")
    feature_url = page.url
    section = page.locator("section.card", has=page.get_by_role("heading", name="Production"))
    section.get_by_text("Change state in Production").click()
    form = section.locator("form[action$='/state']")
    form.get_by_label("Value type").select_option("string")
    form.get_by_label("Value", exact=True).fill("hello")
    form.get_by_role("button", name="Save").click()
    page.wait_for_url(re.compile(r".*/features/\d+.*"))
    sdk = Flagsmith(environment_key=key, api_url=server.api_url)
    assert served_value(lambda: sdk.get_environment_flags(), "hello"), "the value is not served"
    visit.shoot("feature")

    # The page follows the log, but not while a form on it is being edited.
    other = visit.context.new_page()
    other.goto(project_url)
    other.get_by_role("button", name="Turn off banner in Production").click()
    page.wait_for_selector("main[data-refreshed]", timeout=15_000)
    section = page.locator("section.card", has=page.get_by_role("heading", name="Production"))
    section.get_by_text("Change state in Production").click()
    section.locator("form[action$='/state']").get_by_label("Value", exact=True).fill("draft")
    page.get_by_role("heading", name="banner").click()
    stamp = page.get_attribute("main", "data-refreshed")
    other.get_by_role("button", name="Turn on banner in Production").click()
    other.wait_for_load_state()
    time.sleep(2)
    assert page.get_attribute("main", "data-refreshed") == stamp, "refreshed while editing"
    value = section.locator("form[action$='/state']").get_by_label("Value", exact=True)
    assert value.input_value() == "draft"
    other.close()

    # A segment from the rule builder.
    page.goto(project_url + "/segments")
    page.get_by_label("Name", exact=True).fill("pro users")
    group = page.locator("fieldset.group").first
    group.get_by_label("Holds when").select_option("ANY")
    row = group.locator("div.condition").first
    row.get_by_label("Trait").fill("plan")
    row.get_by_label("Operator").select_option("EQUAL")
    row.get_by_label("Value").fill("pro")
    page.get_by_role("button", name="Save segment").click()
    page.wait_for_load_state()
    assert "pro users" in page.content()
    visit.shoot("segments")
    page.get_by_role("link", name="pro users").click()
    page.wait_for_url("**/segments/*")
    visit.shoot("segment")

    # Its override, with a priority; a pro identity gets the override's value.
    page.goto(feature_url)
    section = page.locator("section.card", has=page.get_by_role("heading", name="Production"))
    section.get_by_text("Add or change a segment override").click()
    form = section.locator("form[action$='/segment-overrides']")
    form.get_by_label("Segment").select_option(label="pro users")
    form.get_by_label("Priority (lower wins; empty: last)").fill("1")
    form.get_by_label("Enabled").check()
    form.get_by_label("Value type").select_option("string")
    form.get_by_label("Value", exact=True).fill("for pros")
    form.get_by_role("button", name="Save").click()
    page.wait_for_load_state()
    assert "pro users" in page.locator("table.features").nth(1).inner_text()
    assert served_value(
        lambda: sdk.get_identity_flags("a-pro", traits={"plan": "pro"}), "for pros"
    ), "the segment override is not served"
    visit.shoot("feature-overridden")

    page.get_by_role("link", name="Versions").click()
    page.wait_for_url("**/versions")
    assert page.get_by_role("button", name="Restore version 1").count() == 1
    visit.shoot("versions")
    for path, label in [("/settings", "settings"), ("/integrations", "integrations")]:
        page.goto(project_url + path)
        visit.shoot(label)
    page.goto(project_url + "/time-travel")
    page.get_by_label("or at log position").fill("8")
    page.get_by_role("button", name="Show").click()
    page.wait_for_load_state()
    assert "as of position 8" in page.content()
    visit.shoot("time-travel")
    assert visit.errors == [], f"console errors: {visit.errors}"


def served_value(flags, value):
    """Whether `flags()` (an SDK call) serves banner with `value` within SERVED_SECONDS."""
    deadline = time.monotonic() + SERVED_SECONDS
    while time.monotonic() < deadline:
        try:
            if flags().get_feature_value("banner") == value:
                return True
        except Exception:  # the projection may not have served the change yet
            pass
        time.sleep(0.05)
    return False
