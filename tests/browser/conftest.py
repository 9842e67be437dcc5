"""A real chromium (Debian's, never a downloaded one) driven by Playwright against a live ``libervia serve``.

Every page a test opens is guarded: a Content-Security-Policy violation, a console error, an uncaught exception,
a browser dialog (``alert`` and friends) or any request that leaves the gateway's own origin fails the test.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI
from tests.gateway_process import REPO_ROOT, GatewayProcess

CHROMIUM = os.environ.get("LIBERVIA_TEST_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = REPO_ROOT / "test-artifacts" / "screenshots"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}

# Reports every CSP violation to the test through an exposed binding; Playwright injects this itself, so the
# page's own policy (which forbids inline script) does not apply to it.
CSP_LISTENER = """
document.addEventListener("securitypolicyviolation", (e) => {
  window.__reportViolation(JSON.stringify({directive: e.violatedDirective, blocked: e.blockedURI,
                                           sample: e.sample, source: e.sourceFile, line: e.lineNumber}));
});
"""


def _playwright() -> Any:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if IN_CI:
            pytest.fail("the playwright package is required under CI=true (pip install -e '.[test]')")
        pytest.skip("playwright is not installed")
    if not Path(CHROMIUM).exists():
        if IN_CI:
            pytest.fail(f"{CHROMIUM} is required under CI=true (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} is not installed")
    return sync_playwright


@pytest.fixture(scope="module")
def console_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(tmp_path_factory.mktemp("console") / "data").start()
    yield gateway
    gateway.kill()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with _playwright()() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield launched
        launched.close()


@dataclass
class Guard:
    """What went wrong in the page, by kind; a test ends with every list empty."""

    origin: str
    violations: list[dict[str, Any]] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    foreign_requests: list[str] = field(default_factory=list)

    def problems(self) -> dict[str, list[Any]]:
        found = {"csp violations": self.violations, "console errors": self.console_errors,
                 "page errors": self.page_errors, "dialogs": self.dialogs, "foreign requests": self.foreign_requests}
        return {kind: items for kind, items in found.items() if items}


@dataclass
class Console:
    page: Any
    guard: Guard
    gateway: GatewayProcess

    def open(self, fragment: str = "") -> None:
        self.page.goto(f"{self.gateway.url}/admin/ui/{fragment}")

    def go(self, fragment: str) -> None:
        """Navigate inside the signed-in console (a full page load would forget the token)."""
        self.page.evaluate("(f) => { location.hash = f; }", fragment)

    def shot(self, name: str, full_page: bool = True) -> None:
        """A screenshot artifact of the current view (test-artifacts/, git-ignored)."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page, animations="disabled")

    def sign_in(self, token: str, tenant: str | None = None) -> None:
        page = self.page
        if tenant is not None:
            page.get_by_label("Sign in as").select_option("tenant_admin")
            page.get_by_label("Tenant id").fill(tenant)
        page.get_by_label("Bearer token").fill(token)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("button", name="Sign out").wait_for()


def _api_refusal(message: Any) -> bool:
    """Chromium logs every 4xx as a console error; an API's refusal is what some steps provoke and assert on the
    page. A console asset that fails to load is never one of these."""
    url = message.location.get("url") or ""
    return (message.text.startswith("Failed to load resource: the server responded with a status of 4")
            and "/admin/ui/" not in url)


@pytest.fixture
def console(browser: Any, console_gateway: GatewayProcess) -> Iterator[Console]:
    guard = Guard(console_gateway.url)
    context = browser.new_context(viewport=DESKTOP, accept_downloads=True)
    context.expose_binding("__reportViolation", lambda _source, text: guard.violations.append(json.loads(text)))
    context.add_init_script(CSP_LISTENER)

    def only_the_gateway(route: Any) -> None:
        url = route.request.url
        if url.startswith(guard.origin + "/"):
            route.continue_()
        else:
            guard.foreign_requests.append(url)
            route.abort()

    context.route("**/*", only_the_gateway)
    page = context.new_page()
    page.on("console", lambda msg: guard.console_errors.append(f"{msg.text} ({msg.location.get('url')})")
            if msg.type == "error" and not _api_refusal(msg) else None)
    page.on("pageerror", lambda exc: guard.page_errors.append(str(exc)))

    def dialog(d: Any) -> None:
        guard.dialogs.append(f"{d.type}: {d.message}")
        d.dismiss()

    page.on("dialog", dialog)
    yield Console(page, guard, console_gateway)
    context.close()


class Api:
    """The gateway's HTTP API, called directly to check what the console's actions left behind."""

    def __init__(self, gateway: GatewayProcess, token: str | None = None) -> None:
        self.url = gateway.url
        self.token = token or gateway.admin_token

    def call(self, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method, headers={
            "Authorization": f"Bearer {token or self.token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def get(self, path: str, token: str | None = None) -> Any:
        status, body = self.call("GET", path, token=token)
        assert status == 200, (path, status, body)
        return body

    def post(self, path: str, body: Any, expected: int = 201, token: str | None = None) -> Any:
        status, answer = self.call("POST", path, body, token=token)
        assert status == expected, (path, status, answer)
        return answer


@pytest.fixture
def api(console_gateway: GatewayProcess) -> Api:
    return Api(console_gateway)
