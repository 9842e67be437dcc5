"""The operator console in a real browser: every view clicked through as the global admin and as a tenant_admin,
with what the API holds checked after each action, the XSS payloads inert and the CSP enforced."""

from __future__ import annotations

import json
import re
import secrets
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import PHONE, Api, Console
from tests.core import bodies
from tests.gateway_process import GatewayProcess

pytest.importorskip("playwright")
from playwright.sync_api import expect

expect.set_options(timeout=15_000)  # a loaded CI machine, not a timing assertion

XSS_NAME = "<img src=x onerror=alert(1)>"
XSS_NOTE = '<script>alert(2)</script><b id="xss-bold">bold</b><img src=x onerror="window.__xss=1">'


def _seed_core(api: Api, tenant: str) -> dict[str, Any]:
    """A decision, two mandates and two consequences that suspend them, each opening a review case."""
    public = api.post(f"/admin/tenants/{tenant}/keys", {"role": "public"})["token"]
    decision = api.post("/api/v1/decisoes", bodies.decisao(), token=public)
    seeded: dict[str, Any] = {"decision": decision, "public": public, "mandates": [], "reviews": [], "consequences": []}
    for agent in ("agente-a", "agente-b"):
        seeded["mandates"].append(api.post(f"/admin/tenants/{tenant}/mandates", bodies.mandato(agent))["id"])
        consequence = api.post("/api/v1/consequencias", bodies.consequencia(
            decision["contrato"]["id"], agentId=agent,
            autonomyTriggers={"severidade": "MEDIA", "violou_limites": True}), token=public)
        seeded["consequences"].append(consequence["observacao"]["id"])
        seeded["reviews"].append(consequence["autonomy"]["reviewCaseId"])
    return seeded


def _region(console: Console, name: str) -> Any:
    return console.page.get_by_role("region", name=name, exact=True)


def _no_problems(console: Console) -> None:
    assert console.guard.problems() == {}


def _storage_is_empty(console: Console, token: str) -> None:
    page = console.page
    assert page.evaluate("() => localStorage.length + sessionStorage.length") == 0
    assert page.context.cookies() == []
    assert token not in page.url


def test_console_is_served_with_its_security_headers(console_gateway: GatewayProcess) -> None:
    opener = urllib.request.build_opener(type("NoRedirect", (urllib.request.HTTPRedirectHandler,), {
        "redirect_request": lambda *args, **kwargs: None})())
    try:
        opener.open(console_gateway.url + "/admin/ui", timeout=10)
        raise AssertionError("expected a redirect")
    except urllib.error.HTTPError as redirect:
        assert redirect.code == 308 and redirect.headers["Location"] == "/admin/ui/"
    for path, kind in (("/admin/ui/", "text/html"), ("/admin/ui/console.js", "text/javascript"),
                       ("/admin/ui/console.css", "text/css")):
        with urllib.request.urlopen(console_gateway.url + path, timeout=10) as response:
            headers = response.headers
            assert response.status == 200 and headers["Content-Type"].startswith(kind)
            csp = headers["Content-Security-Policy"]
            assert "default-src 'self'" in csp and "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
            assert "frame-ancestors 'none'" in csp
            assert headers["X-Frame-Options"] == "DENY"
            assert headers["X-Content-Type-Options"] == "nosniff"
            assert headers["Referrer-Policy"] == "no-referrer"
    try:
        urllib.request.urlopen(console_gateway.url + "/admin/ui/..%2F__init__.py", timeout=10)
        raise AssertionError("expected 404")
    except urllib.error.HTTPError as missing:
        assert missing.code == 404 and json.loads(missing.read())["code"] == "NOT_FOUND"
        assert missing.headers["X-Frame-Options"] == "DENY"


def test_shipped_assets_name_no_other_origin() -> None:
    static = Path(__file__).resolve().parents[2] / "plugins" / "admin_ui" / "static"
    for asset in static.iterdir():
        text = asset.read_text()
        assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function", text), asset
        assert not re.search(r"localStorage|sessionStorage|document\.cookie", text), asset
        foreign = [url for url in re.findall(r"[a-z]+://[^\s\"')]+", text) if url != "http://www.w3.org/2000/svg"]
        assert foreign == [], (asset, foreign)


def test_global_admin_walks_every_view(console: Console, api: Api) -> None:
    page = console.page
    tenant = f"ui-{secrets.token_hex(3)}"
    console.open()
    console.shot("00-sign-in")
    console.sign_in(console.gateway.admin_token)
    _storage_is_empty(console, console.gateway.admin_token)

    # Tenants: create, counts, search, filter.
    expect(page.get_by_role("heading", level=1, name="Tenants")).to_be_visible()
    create = _region(console, "New tenant")
    create.get_by_label("Tenant id").fill(tenant)
    create.get_by_label("Name").fill("Console Corp")
    create.get_by_label("Rate limit (requests/minute, 0 = unlimited)").fill("500")
    create.get_by_label("Features (JSON object)").fill('{"beta": true}')
    create.get_by_role("button", name="Create tenant").click()
    expect(create.get_by_text(f"Tenant {tenant} created.")).to_be_visible()
    held = api.get(f"/admin/tenants/{tenant}")
    assert held["name"] == "Console Corp" and held["quotas"]["rateLimitRpm"] == 500
    assert held["features"] == {"beta": True}
    active = sum(1 for t in api.get("/admin/tenants?status=active&limit=200"))
    expect(page.locator('[data-status="active"] .count-n')).to_have_text(str(active))
    page.get_by_label("Search").fill(tenant)
    expect(page.locator(f'tr[data-key="{tenant}"]')).to_be_visible()
    expect(page.locator("tbody tr")).to_have_count(1)
    console.shot("01-tenants")

    # Tenant: edit, suspend, resume.
    page.get_by_role("link", name=f"Manage {tenant}").click()
    edit = _region(console, "Edit")
    edit.get_by_label("Name").fill("Console Corp renamed")
    edit.get_by_label("Max events (empty = no limit)").fill("100000")
    edit.get_by_role("button", name="Save changes").click()
    expect(page.get_by_text("Saved.")).to_be_visible()
    held = api.get(f"/admin/tenants/{tenant}")
    assert held["name"] == "Console Corp renamed" and held["quotas"]["maxEvents"] == 100000
    _region(console, "Lifecycle").get_by_label("Suspension reason").fill("audit pending")
    page.get_by_role("button", name="Suspend tenant").click()
    expect(page.get_by_text(f"Tenant {tenant} suspended.")).to_be_visible()
    assert api.get(f"/admin/tenants/{tenant}")["status"] == "suspended"
    console.go("#/tenants")
    page.get_by_label("Status", exact=True).select_option("suspended")
    expect(page.locator(f'tr[data-key="{tenant}"]')).to_be_visible()
    console.go(f"#/t/{tenant}/tenant")
    page.get_by_role("button", name="Resume tenant").click()
    expect(page.get_by_text(f"Tenant {tenant} resumed.")).to_be_visible()
    assert api.get(f"/admin/tenants/{tenant}")["status"] == "active"
    console.shot("02-tenant")
    doomed = f"{tenant}-old"
    api.post("/admin/tenants", {"id": doomed, "name": "to delete"})
    console.go(f"#/t/{doomed}/tenant")
    page.get_by_role("button", name="Delete tenant").click()
    page.get_by_role("button", name="Yes, delete tenant").click()
    expect(page.get_by_text(f"Tenant {doomed} deleted.")).to_be_visible()
    assert api.get(f"/admin/tenants/{doomed}")["status"] == "deleted"

    # Keys: create (token shown once), revoke, rotate.
    console.go(f"#/t/{tenant}/keys")
    new_key = _region(console, "New key")
    new_key.get_by_label("Role", exact=True).select_option("tenant_admin")
    new_key.get_by_label("Description").fill("ops laptop")
    new_key.get_by_role("button", name="Create key").click()
    token_field = new_key.get_by_label("Token (shown once)")
    expect(token_field).to_be_visible()
    expect(new_key.get_by_role("alert")).to_contain_text("shown only once")
    token = token_field.input_value()
    new_key.get_by_role("button", name="Copy token").click()
    expect(new_key.get_by_text("Copied.")).to_be_visible()
    listed = api.get(f"/admin/tenants/{tenant}/keys")["keys"]
    created = next(k for k in listed if k["description"] == "ops laptop")
    assert created["role"] == "tenant_admin" and created["status"] == "active"
    assert api.call("GET", f"/admin/tenants/{tenant}", token=token)[0] == 200
    console.shot("03-keys-created")
    row = page.locator(f'tr[data-key="{created["keyId"]}"]')
    row.get_by_role("button", name="Revoke").click()
    row.get_by_role("button", name="Yes, revoke").click()
    expect(page.get_by_text(f"Key {created['keyId']} revoked.")).to_be_visible()
    assert next(k for k in api.get(f"/admin/tenants/{tenant}/keys")["keys"]
                if k["keyId"] == created["keyId"])["status"] == "revoked"
    assert api.call("GET", f"/admin/tenants/{tenant}", token=token)[0] == 401
    rotation = _region(console, "Rotation")
    rotation.get_by_label("Role", exact=True).select_option("public")
    api.post(f"/admin/tenants/{tenant}/keys", {"role": "public", "description": "old public"})
    rotation.get_by_label("Revoke the old keys of this role").check()
    rotation.get_by_role("button", name="Rotate").click()
    expect(rotation.get_by_label("Token (shown once)")).to_be_visible()
    keys = api.get(f"/admin/tenants/{tenant}/keys")["keys"]
    publics = [k for k in keys if k["role"] == "public"]
    assert sum(k["status"] == "active" for k in publics) == 1 and len(publics) == 2

    # Core data to look at, written through the public API.
    seeded = _seed_core(api, tenant)
    mandate_a, mandate_b = seeded["mandates"]
    review_a, review_b = seeded["reviews"]

    console.go(f"#/t/{tenant}")
    dashboard = api.get(f"/admin/query/{tenant}/dashboard")
    mandates_region = _region(console, "Mandates")
    expect(mandates_region.get_by_role("link", name=f"{dashboard['mandates']['suspended']} suspended")).to_be_visible()
    expect(_region(console, "Review cases").get_by_role("link", name="2 open")).to_be_visible()
    expect(page.locator("tbody tr").first).to_contain_text("HUMAN_REVIEW_CASE_OPENED")
    console.shot("04-dashboard")

    # Event log: verify, verify-fast, checkpoints, export both ways, paging.
    console.go(f"#/t/{tenant}/events")
    total = api.get(f"/admin/tenants/{tenant}/events?limit=1")["total"]
    expect(page.get_by_text(f"Page 1 of {-(-total // 25)} · {total} events")).to_be_visible()
    page.get_by_role("button", name="Verify full chain").click()
    expect(page.get_by_text(f"{total} events verified from the first event (genesis)")).to_be_visible()
    page.get_by_role("button", name="Verify fast (from checkpoint)").click()
    expect(page.get_by_text("Chain valid.")).to_be_visible()
    for label, suffix in (("Download JSON", "json"), ("Download NDJSON", "ndjson")):
        with page.expect_download() as info:
            page.get_by_role("button", name=label).click()
        download = info.value
        assert download.suggested_filename == f"{tenant}-eventlog.{suffix}"
        text = Path(download.path()).read_text()
        manifest = json.loads(text)["manifest"] if suffix == "json" else json.loads(text.splitlines()[-1])["manifest"]
        assert manifest["count"] == total and manifest["chainValidWithinExport"] is True
    newest = api.get(f"/admin/tenants/{tenant}/events?limit=1&offset={total - 1}")["events"][0]
    expect(page.locator("tbody tr").first).to_have_attribute("data-key", str(newest["seq"]))
    console.shot("05-event-log")

    # Mandates: list by status, grant, detail with history, suspend, resume (reason required), revoke.
    console.go(f"#/t/{tenant}/mandates")
    page.get_by_label("Status", exact=True).select_option("suspended")
    expect(page.locator(f'tr[data-key="{mandate_a}"]')).to_be_visible()
    grant = _region(console, "New mandate")
    grant.get_by_label("Agent id").fill("agente-ui")
    grant.get_by_label("Allowed policies (comma separated)").fill("compras, vendas")
    grant.get_by_role("button", name="Grant mandate").click()
    expect(grant.get_by_text("Mandate granted:")).to_be_visible()
    granted = next(m for m in api.get(f"/admin/query/{tenant}/mandates?limit=200")["mandates"]
                   if m["agentId"] == "agente-ui")
    assert granted["status"] == "active" and granted["politicas_permitidas"] == ["compras", "vendas"]
    console.shot("06-mandates")
    console.go(f"#/t/{tenant}/mandates/{granted['id']}")
    page.get_by_role("button", name="Suspend").click()
    expect(page.get_by_text("Suspend: done.")).to_be_visible()
    assert api.get(f"/admin/query/{tenant}/mandates/{granted['id']}")["status"] == "suspended"
    page.get_by_role("button", name="Resume").click()
    expect(page.get_by_text("Resume: done.")).to_be_visible()
    page.get_by_role("button", name="Revoke").click()
    expect(page.get_by_text("Revoke: done.")).to_be_visible()
    held = api.get(f"/admin/query/{tenant}/mandates/{granted['id']}")
    assert held["status"] == "revoked"
    expect(_region(console, "History").locator("tbody tr")).to_have_count(len(held["history"]))
    console.go(f"#/t/{tenant}/mandates/{mandate_b}")
    expect(page.get_by_label("Reason (required: a consequence suspended this mandate)")).to_be_visible()
    page.evaluate("() => document.querySelector('input[name=reason]').removeAttribute('required')")
    page.get_by_role("button", name="Resume").click()
    error = page.locator(".error")
    expect(error.locator(".error-code")).to_have_text("REASON_REQUIRED")
    expect(error.locator(".error-request")).to_contain_text("request_id: req")
    expect(page.locator("#last-request-id")).to_have_text(error.locator(".error-request code").inner_text())
    console.shot("07-mandate-error")
    page.get_by_label("Reason (required: a consequence suspended this mandate)").fill("checked with the team")
    page.get_by_role("button", name="Resume").click()
    expect(page.get_by_text("Resume: done.")).to_be_visible()
    assert api.get(f"/admin/query/{tenant}/mandates/{mandate_b}")["status"] == "active"

    # Review cases: list by status, resolve with effects (outcome shown), dismiss, notes.
    console.go(f"#/t/{tenant}/reviews")
    page.get_by_label("Status", exact=True).select_option("OPEN")
    expect(page.locator("tbody tr")).to_have_count(2)
    console.shot("08-reviews")
    page.get_by_role("link", name=review_a).click()
    resolve = _region(console, "Resolve")
    resolve.get_by_label("Resolution").select_option("APPROVE")
    resolve.get_by_label("Notes (required unless NO_ACTION)").fill("agent retrained")
    resolve.get_by_label("RESUME_MANDATE").check()
    resolve.get_by_role("button", name="Resolve case").click()
    result = _region(console, "Result")
    expect(result.get_by_text("Resolved: APPROVE.")).to_be_visible()
    expect(result.locator("tbody tr")).to_contain_text("applied")
    held = api.get(f"/admin/query/{tenant}/reviews/{review_a}")
    assert held["status"] == "RESOLVED" and held["effects"][0]["ok"] is True
    assert api.get(f"/admin/query/{tenant}/mandates/{mandate_a}")["status"] == "active"
    _region(console, "Add a note").get_by_label("Note").fill("follow-up in a week")
    page.get_by_role("button", name="Save note").click()
    expect(page.get_by_text("Note saved.")).to_be_visible()
    assert api.get(f"/admin/query/{tenant}/reviews/{review_a}")["notes"] == "follow-up in a week"
    expect(_region(console, "Earlier notes").get_by_text("agent retrained")).to_be_visible()
    console.shot("09-review")
    console.go(f"#/t/{tenant}/reviews/{review_b}")
    _region(console, "Dismiss").get_by_label("Notes").fill("duplicate")
    page.get_by_role("button", name="Dismiss case").click()
    expect(page.get_by_text("Dismissed.")).to_be_visible()
    assert api.get(f"/admin/query/{tenant}/reviews/{review_b}")["status"] == "DISMISSED"

    # Consequences, and the episode and contract they belong to.
    console.go(f"#/t/{tenant}/consequences")
    expect(page.locator("tbody tr")).to_have_count(2)
    page.get_by_role("link", name=seeded["consequences"][0]).click()
    episode = seeded["decision"]["episodio_id"]
    contract = seeded["decision"]["contrato"]["id"]
    expect(page.get_by_role("link", name=review_a)).to_be_visible()
    console.shot("10-consequence")
    page.get_by_role("link", name=episode).click()
    timeline = _region(console, "Timeline")
    expect(timeline.locator("tbody tr").first).to_be_visible()
    expect(timeline).to_contain_text("DECISAO")
    console.shot("11-episode-timeline")
    page.go_back()
    page.get_by_role("link", name=contract).click()
    expect(_region(console, "Timeline")).to_contain_text("CONSEQUENCIA_REGISTRADA")

    # Instances and operational health, each check with its alert name.
    console.go("#/instances")
    checks = _region(console, "Operational health")
    alerts = ("ERROR_RATE_SPIKE", "HIGH_LATENCY", "AUTH_FAILURE_SPIKE", "TENANT_CONFLICT_SPIKE", "RATE_LIMIT_ABUSE")
    for alert in alerts:
        expect(checks.get_by_text(alert, exact=True)).to_be_visible()
    expect(page.locator(f'tr[data-key="{tenant}"]')).to_be_visible()
    console.shot("12-instances-health")

    # Metrics, refreshed while the view is open.
    console.go("#/metrics")
    for title in ("Request rate", "5xx rate", "p95 latency", "Auth failures", "Rate-limited requests"):
        expect(page.locator(f'figure[data-series="{title}"]')).to_be_visible()
    expect(page.get_by_text(re.compile(r"^2 samples, last at"))).to_be_visible(timeout=15000)
    expect(page.locator('figure[data-series="Request rate"] polyline')).to_have_count(1)
    expect(page.locator('figure[data-series="Request rate"] .chart-latest')).to_have_text(re.compile(r"req/s$"))
    console.shot("13-metrics")

    # Sign out forgets the token: the console asks for it again.
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    console.go("#/tenants")
    expect(page.get_by_label("Bearer token")).to_be_visible()
    _storage_is_empty(console, console.gateway.admin_token)
    _no_problems(console)


def test_tenant_admin_sees_only_its_own_tenant(console: Console, api: Api) -> None:
    page = console.page
    tenant = f"ta-{secrets.token_hex(3)}"
    other = f"tb-{secrets.token_hex(3)}"
    for name in (tenant, other):
        api.post("/admin/tenants", {"id": name, "name": name})
    admin_key = api.post(f"/admin/tenants/{tenant}/keys", {"role": "tenant_admin"})["token"]
    public_key = api.post(f"/admin/tenants/{tenant}/keys", {"role": "public"})["token"]
    seeded = _seed_core(api, tenant)

    console.open()
    console.page.get_by_label("Sign in as").select_option("tenant_admin")
    page.get_by_label("Tenant id").fill(tenant)
    page.get_by_label("Bearer token").fill(public_key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".error-code")).to_have_text("INSUFFICIENT_ROLE")
    page.get_by_label("Tenant id").fill(other)
    page.get_by_label("Bearer token").fill(admin_key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".error-code")).to_have_text("INVALID_TOKEN")
    expect(page.locator(".error-request code")).to_have_text(re.compile(r"^req"))

    console.sign_in(admin_key, tenant)
    assert page.url.endswith(f"/admin/ui/#/t/{tenant}")
    _storage_is_empty(console, admin_key)
    expect(page.get_by_role("heading", name=f"Dashboard · {tenant}")).to_be_visible()
    nav = page.get_by_role("navigation", name="Sections")
    for hidden in ("Tenants", "Instances and health", "Metrics"):
        expect(nav.get_by_role("link", name=hidden, exact=True)).to_have_count(0)
    console.go("#/tenants")
    expect(page).to_have_url(re.compile(rf"#/t/{tenant}$"))
    console.go(f"#/t/{other}/keys")
    expect(page).to_have_url(re.compile(rf"#/t/{tenant}$"))
    console.shot("20-tenant-admin-dashboard")

    console.go(f"#/t/{tenant}/tenant")
    expect(_region(console, "Tenant")).to_contain_text(tenant)
    expect(page.get_by_role("button", name="Suspend tenant")).to_have_count(0)
    expect(_region(console, "Edit")).to_have_count(0)

    console.go(f"#/t/{tenant}/keys")
    new_key = _region(console, "New key")
    new_key.get_by_label("Description").fill("from the tenant admin")
    new_key.get_by_role("button", name="Create key").click()
    expect(new_key.get_by_label("Token (shown once)")).to_be_visible()
    assert any(k["description"] == "from the tenant admin" for k in api.get(f"/admin/tenants/{tenant}/keys")["keys"])

    console.go(f"#/t/{tenant}/events")
    page.get_by_role("button", name="Verify full chain").click()
    expect(page.get_by_text("Chain valid.")).to_be_visible()

    console.go(f"#/t/{tenant}/reviews/{seeded['reviews'][0]}")
    resolve = _region(console, "Resolve")
    resolve.get_by_label("Resolution").select_option("REJECT")
    resolve.get_by_label("Notes (required unless NO_ACTION)").fill("not acceptable")
    resolve.get_by_label("REVOKE_MANDATE").check()
    resolve.get_by_role("button", name="Resolve case").click()
    expect(_region(console, "Result").get_by_text("Resolved: REJECT.")).to_be_visible()
    review = api.get(f"/admin/query/{tenant}/reviews/{seeded['reviews'][0]}")
    assert review["status"] == "RESOLVED" and review["closed_by"].startswith("key_")
    assert api.get(f"/admin/query/{tenant}/mandates/{seeded['mandates'][0]}")["status"] == "revoked"

    console.go(f"#/t/{tenant}/timeline/{seeded['decision']['episodio_id']}")
    expect(_region(console, "Episode state")).to_contain_text("DECIDIDO")

    console.go(f"#/t/{tenant}/metrics")
    expect(page.get_by_text(re.compile(r"^2 samples, last at"))).to_be_visible(timeout=15000)
    expect(page.locator('figure[data-series="Request rate"] .chart-latest')).to_have_text(re.compile(r"req/s$"))
    expect(page.locator('figure[data-series="p95 latency"]')).to_have_count(0)  # tenant series have no histogram
    console.shot("23-tenant-metrics")

    # Phone width: every tenant view fits without sideways scrolling.
    page.set_viewport_size(PHONE)
    review = seeded["reviews"][1]
    views = {"": "Dashboard", "/tenant": "Tenant", "/keys": "Keys", "/events": "Event log", "/mandates": "Mandates",
             f"/mandates/{seeded['mandates'][1]}": "Mandate", "/reviews": "Review cases",
             f"/reviews/{review}": "Review case",
             "/consequences": "Consequences", f"/consequences/{seeded['consequences'][1]}": "Consequence",
             f"/timeline/{seeded['decision']['contrato']['id']}": "Timeline"}
    for suffix, title in views.items():
        console.go(f"#/t/{tenant}{suffix}")
        expect(page.get_by_role("heading", level=1, name=f"{title} · {tenant}")).to_be_visible()
        expect(page.locator(".loading")).to_have_count(0)
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"{title} scrolls sideways at phone width ({width}px)"
    console.go(f"#/t/{tenant}")
    expect(page.locator(".loading")).to_have_count(0)
    console.shot("21-phone-dashboard")
    console.go(f"#/t/{tenant}/mandates")
    expect(page.locator("tbody tr").first).to_be_visible()
    console.shot("22-phone-mandates", full_page=False)
    _no_problems(console)


def test_keyboard_alone_signs_in_and_focus_is_visible(console: Console) -> None:
    page = console.page
    console.open()
    expect(page.get_by_label("Sign in as")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_label("Bearer token")).to_be_focused()
    page.keyboard.type(console.gateway.admin_token)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1, name="Tenants")).to_be_focused()
    page.keyboard.press("Shift+Tab")
    outline = page.evaluate(
        "() => [document.activeElement.tagName, getComputedStyle(document.activeElement).outlineStyle]")
    assert outline[0] == "A" and outline[1] != "none", outline
    unlabelled = page.evaluate("""() => [...document.querySelectorAll('input, select, textarea')]
        .filter((c) => !(c.labels && c.labels.length) && !c.getAttribute('aria-label')).map((c) => c.name)""")
    assert unlabelled == []
    _no_problems(console)


def test_markup_in_server_data_is_shown_as_text(console: Console, api: Api) -> None:
    page = console.page
    tenant = f"xss-{secrets.token_hex(3)}"
    api.post("/admin/tenants", {"id": tenant, "name": XSS_NAME})
    seeded = _seed_core(api, tenant)
    review = seeded["reviews"][0]
    api.post(f"/admin/tenants/{tenant}/reviews/{review}/notes", {"notes": XSS_NOTE}, expected=200)
    api.post(f"/admin/tenants/{tenant}/mandates", bodies.mandato(XSS_NAME))

    console.open()
    console.sign_in(console.gateway.admin_token)
    page.get_by_label("Search").fill(tenant)
    expect(page.locator(f'tr[data-key="{tenant}"] td').nth(1)).to_have_text(XSS_NAME)
    console.go(f"#/t/{tenant}/tenant")
    expect(_region(console, "Tenant").get_by_text(XSS_NAME, exact=True)).to_be_visible()
    console.go(f"#/t/{tenant}/reviews/{review}")
    expect(page.get_by_text(XSS_NOTE, exact=True)).to_be_visible()
    console.shot("30-xss-inert-review")
    console.go(f"#/t/{tenant}/mandates")
    expect(page.get_by_text(XSS_NAME, exact=True)).to_be_visible()
    console.go(f"#/t/{tenant}/events")
    expect(page.locator("tbody tr").first).to_be_visible()
    for details in page.locator("details").all():
        details.locator("summary").click()
    expect(page.locator("pre.payload").filter(has_text="xss-bold")).to_have_count(1)
    assert page.locator("main img, main script, #xss-bold").count() == 0
    assert page.evaluate("() => window.__xss === undefined")
    _no_problems(console)


def test_the_policy_blocks_inline_script_and_the_guard_reports_it(console: Console) -> None:
    """The guard the other tests rely on sees a violation, and the policy stops the inline code from running."""
    page = console.page
    console.open()
    expect(page.get_by_label("Bearer token")).to_be_visible()
    page.evaluate("""() => { const s = document.createElement('script'); s.textContent = 'window.__ran = 1';
                             document.body.append(s); }""")
    for _ in range(50):  # the violation event is dispatched asynchronously
        if console.guard.violations:
            break
        page.wait_for_timeout(100)
    assert page.evaluate("() => window.__ran") is None
    assert any(v["directive"].startswith("script-src") for v in console.guard.violations), console.guard.violations
    # Nor can the page's code reach another origin: the policy refuses before any request is made.
    refused = page.evaluate("() => fetch('http://192.0.2.1/x').then(() => 'sent', () => 'refused')")
    assert refused == "refused" and console.guard.foreign_requests == []
    for _ in range(50):
        if any(v["directive"].startswith("connect-src") for v in console.guard.violations):
            break
        page.wait_for_timeout(100)
    assert any(v["blocked"].startswith("http://192.0.2.1") for v in console.guard.violations), console.guard.violations
