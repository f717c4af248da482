"""The console in a real browser against a real stack: the real oidc-provider for consent, real
MCP servers upstream, and the MCP client for what an agent sees. Every test saves full-page
screenshots under test-artifacts/console/."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from support.admin import admin_client, agent
from support.browser import CHROMIUM, axe_script, shot
from support.connectors import Idp, add_oauth, idp
from support.consent import complete_consent
from support.infra import wait_for
from support.upstream import Upstream, bearer_upstream
from warden_cli.embedded import Stack

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium (apt-get install chromium; .ci/run does)"),
]
T = 30_000  # every wait in the browser is bounded (ms)


@pytest.fixture(scope="module")
async def env(stack: Stack) -> AsyncIterator[Idp]:
    async with idp(stack) as e:
        yield e


@pytest.fixture(scope="module")
async def demo(stack: Stack) -> AsyncIterator[tuple[Upstream, str]]:
    """The demo MCP server behind a static bearer connector, its tools not registered yet."""
    async with bearer_upstream() as up, admin_client(stack) as admin:
        name = await admin.connector(up.url, up.token)
        yield up, name


@asynccontextmanager
async def signed_in(browser: Any, stack: Stack, secret: str, kind: str = "admin", **ctx: Any) -> AsyncIterator[Any]:
    context = await browser.new_context(base_url=stack.urls["console"], viewport={"width": 1280, "height": 900}, **ctx)
    context.set_default_timeout(T)
    try:
        page = await context.new_page()
        await page.goto("/login")
        if kind != "admin":
            await page.get_by_label("End user (your agent key)").check()
        await page.get_by_label("Token or key").fill(secret)
        await page.get_by_role("button", name="Sign in").click()
        await page.wait_for_url("**/connectors" if kind == "admin" else "**/me")
        yield page
    finally:
        await context.close()


def _cli_json(stack: Stack, name: str) -> Any:
    env = {**os.environ, "WARDEN_CONNECTORS_URL": stack.urls["connectors"], "WARDEN_ADMIN_TOKEN": stack.admin_token}
    out = subprocess.run(
        [sys.executable, "-m", "warden_cli", "connectors", "json", name],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    return json.loads(out.stdout)


async def test_dcr_connector_added_and_authorized_in_the_popup_turns_active(
    stack: Stack, env: Idp, browser: Any
) -> None:
    async with signed_in(browser, stack, stack.admin_token) as page:
        await page.get_by_role("button", name="Add connector").click()
        dialog = page.get_by_role("dialog")
        await dialog.get_by_label("Name", exact=True).fill("dcr-notes")
        await dialog.get_by_label("MCP server URL").fill(env.mcp.url)
        await shot(page, "connectors-add")
        async with page.context.expect_page() as popup_info:
            await dialog.get_by_role("button", name="Add & authorize").click()
        popup = await popup_info.value
        card = page.locator('article[data-connector="dcr-notes"]')
        await card.locator('[data-status="active"]').wait_for()
        assert popup.is_closed() or "connect/callback" in popup.url
        await shot(page, "connectors")

        await card.get_by_role("button", name="Details").click()
        shown = json.loads(await page.locator("#connector-json").inner_text())
        await shot(page, "connector-details")
        assert shown == _cli_json(stack, "dcr-notes")
        assert shown["connector"]["auth"]["type"] == "oauth2"
        page_text = await page.content()
    async with admin_client(stack) as admin:
        view = await admin.req("GET", "connectors", "/v1/connectors/dcr-notes")
    assert view["status"] == "active" and view["oauth"]["client_source"] == "dcr"
    assert stack.admin_token not in page_text


async def test_discover_register_a_subset_grant_and_a_key_made_on_the_page_sees_exactly_those(
    stack: Stack, demo: tuple[Upstream, str], browser: Any
) -> None:
    _, c = demo
    async with signed_in(browser, stack, stack.admin_token) as page:
        await page.goto("/tools")
        await page.get_by_label("Connector").select_option(c)
        await page.get_by_role("button", name="Discover tools…").click()
        dialog = page.get_by_role("dialog")
        for tool in ("add", "utc_now"):
            await dialog.get_by_label(f"Register {tool}", exact=True).uncheck()
        await dialog.get_by_label("Operation of echo").select_option("write")  # adjust a fact
        await shot(page, "tools-discovery")
        await dialog.get_by_role("button", name="Register 2 tools").click()
        await dialog.get_by_label("Profile", exact=True).select_option("")
        await dialog.get_by_label("New profile name").fill("subset")
        await dialog.get_by_label("Reason").fill("support agents need echo and notes")
        await dialog.get_by_role("button", name="Grant").click()
        await dialog.wait_for(state="detached")
        await page.locator(f'tr[data-tool="{c}__echo"]').wait_for()
        await shot(page, "tools")

        await page.goto("/profiles")
        await page.locator('article[data-profile="subset"]').get_by_role("button", name="Create agent key").click()
        await page.get_by_role("dialog").get_by_role("button", name="Create key").click()
        key = (await page.locator("#new-key").inner_text()).strip()
        assert "mcpServers" in await page.get_by_role("dialog").inner_text()
        await shot(page, "profiles-key")
    assert key.startswith("wk_")
    async with agent(stack, key) as client:
        names = {t.name for t in (await client.list_tools()).tools}
    assert names == {f"{c}__echo", f"{c}__delete_note"}
    async with admin_client(stack) as admin:
        echo = await admin.req("GET", "registry", f"/v1/tools/{c}__echo")
        profile = await admin.req("GET", "registry", "/v1/profiles/subset")
    assert echo["operation"] == "write"
    assert {g["reason"] for g in profile["grants"]} == {"support agents need echo and notes"}


async def test_try_it_runs_a_tool_from_its_schema_form(stack: Stack, demo: tuple[Upstream, str], browser: Any) -> None:
    _, c = demo
    async with admin_client(stack) as admin:
        await admin.register(c, [{"name": "add"}])
        await admin.profile([f"{c}__add"], name="tryer")
        await admin.profile([], name="0-listed-first")  # profiles list by name: this one loads first
    async with signed_in(browser, stack, stack.admin_token) as page:
        # The first profile's tool list (loaded with the page) answering after tryer's must not
        # replace it: CI once lost this race. Hold that answer until tryer's tool is picked.
        release = asyncio.Event()

        async def hold_others(route: Any) -> None:
            if "/profiles/tryer/" not in route.request.url:
                await release.wait()
            await route.continue_()

        await page.route("**/api/s/registry/v1/profiles/*/visible", hold_others)
        await page.goto("/try")
        await page.get_by_label("Run as profile").select_option("tryer")
        await page.get_by_label("Tool").select_option(f"{c}__add")
        async with page.expect_response(lambda r: "/profiles/0-listed-first/visible" in r.url):
            release.set()
        await page.evaluate("() => new Promise((r) => setTimeout(r, 100))")  # let the page handle it
        await page.get_by_label("a (required)").fill("2")
        await page.get_by_label("b (required)").fill("40")
        await page.get_by_role("button", name="Run").click()
        result = page.locator('[data-outcome="ok"]')
        await result.wait_for()
        assert "42" in await result.inner_text()
        await shot(page, "try-it")


async def test_an_approval_decided_from_a_second_browser_completes_or_refuses_the_waiting_call(
    stack: Stack, browser: Any
) -> None:
    async with bearer_upstream() as up, admin_client(stack) as admin:
        c = await admin.connector(up.url, up.token)
        await admin.register(c, [{"name": "delete_note", "auto_approve": False}])
        await admin.profile([f"{c}__delete_note"], name="held")
        await _decide_in_a_second_browser(stack, browser, c)


async def _decide_in_a_second_browser(stack: Stack, browser: Any, c: str) -> None:
    async with (
        signed_in(browser, stack, stack.admin_token) as caller,
        signed_in(browser, stack, stack.admin_token) as approver,
    ):
        await approver.goto("/approvals")
        await caller.goto("/try")
        await caller.get_by_label("Run as profile").select_option("held")
        await caller.get_by_label("Tool").select_option(f"{c}__delete_note")  # waits for the profile's tools
        for verdict in ("approve", "reject"):
            await caller.get_by_label("note_id (required)").fill(f"n-{verdict}")
            await caller.get_by_role("button", name="Run").click()
            row = approver.locator(f'tr[data-tool="{c}__delete_note"]', has_text=f"n-{verdict}").first
            await row.wait_for()
            await shot(approver, "approvals")
            if verdict == "approve":
                await row.get_by_role("button", name="Approve").click()
                done = caller.locator('[data-outcome="ok"]')
            else:
                await row.get_by_label(f"Reason for {c}__delete_note", exact=False).fill("not on a Friday")
                await row.get_by_role("button", name="Reject").click()
                done = caller.locator('[data-outcome="refused"]')
            await done.wait_for()
            text = await done.inner_text()
            if verdict == "reject":
                assert "not on a Friday" in text or "reject" in text.lower()
            await shot(caller, f"try-it-held-{verdict}")


async def test_disconnect_asks_first_and_then_calls_fail_closed(stack: Stack, browser: Any) -> None:
    async with bearer_upstream() as up, admin_client(stack) as admin:
        c, _, key = await admin.setup(up.url, up.token)
        async with signed_in(browser, stack, stack.admin_token) as page:
            card = page.locator(f'article[data-connector="{c}"]')
            await card.get_by_role("button", name="Disconnect").click()
            await shot(page, "connectors-disconnect-confirm")
            await page.get_by_role("dialog").get_by_role("button", name="Disconnect").click()
            await page.locator(f'article[data-connector="{c}"][data-status="disconnected"]').wait_for()
        async with agent(stack, key) as client:
            r = await client.call_tool(f"{c}__echo", {"text": "hi"})
        assert r.is_error


async def test_an_end_user_session_gets_403_on_admin_pages_and_a_forged_cross_site_post_is_refused(
    stack: Stack, demo: tuple[Upstream, str], browser: Any
) -> None:
    _, c = demo
    async with admin_client(stack) as admin:
        await admin.profile([], name="enduser")
        made = await admin.req(
            "POST", "proxy", "/v1/agent-keys", json={"name": "u", "profile": "enduser", "user": "uma"}
        )
    async with signed_in(browser, stack, made["key"], kind="user") as page:
        await shot(page, "my-connections")
        for path in ("/connectors", "/tools", "/try", "/profiles", "/approvals", "/audit"):
            r = await page.goto(path)
            assert r is not None and r.status == 403, path
            assert "403" in await page.locator("h1").inner_text()
        await shot(page, "forbidden")
        r = await page.request.get(f"/api/s/connectors/v1/connectors/{c}")
        assert r.status == 403
    async with signed_in(browser, stack, stack.admin_token) as page:
        # the page's own session, but no CSRF token: refused
        status = await page.evaluate(
            "async (c) => (await fetch(`/api/s/connectors/v1/connectors/${c}/disconnect`, {method: 'POST'})).status", c
        )
        assert status == 403
        # another site makes the browser post a form to the console: refused
        console = stack.urls["console"]
        forged = f"""<form id=f method=post action="{console}/api/s/connectors/v1/connectors/{c}/disconnect"
            enctype="text/plain"><input name=x value=y></form><script>document.getElementById('f').submit()</script>"""
        await page.route("http://evil.example/**", lambda route: route.fulfill(body=forged, content_type="text/html"))
        async with page.expect_response(lambda r: "/disconnect" in r.url) as resp_info:
            await page.goto("http://evil.example/")
        resp = await resp_info.value
        assert resp.status in (401, 403)
    async with admin_client(stack) as admin:
        assert (await admin.req("GET", "connectors", f"/v1/connectors/{c}"))["status"] == "active"


async def test_every_page_has_no_serious_accessibility_violations(stack: Stack, browser: Any) -> None:
    script = axe_script()
    pages = ["/connectors", "/tools", "/try", "/profiles", "/approvals", "/audit", "/login"]
    found: dict[str, list[str]] = {}
    # axe is injected as an inline script: this context alone bypasses the console's CSP
    async with signed_in(browser, stack, stack.admin_token, bypass_csp=True) as page:
        for path in pages:
            await page.goto(path)
            if path == "/approvals":  # its live queue keeps a stream open: the network is never idle
                await page.locator('[data-mode="live"]').wait_for(state="attached")
            else:
                await page.wait_for_load_state("networkidle")
            await shot(page, f"a11y-{path.strip('/')}")
            if script is not None:
                await page.add_script_tag(path=str(script))
                violations = await page.evaluate(
                    "async () => (await axe.run(document)).violations"
                    ".filter(v => ['serious', 'critical'].includes(v.impact)).map(v => v.id + ': ' + v.help)"
                )
            else:  # no npm: every control must at least have a name
                violations = await page.evaluate(
                    "() => [...document.querySelectorAll('button, input, select, textarea, a[href]')]"
                    ".filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')"
                    " && !e.textContent.trim() && e.type !== 'hidden').map(e => e.outerHTML.slice(0, 120))"
                )
            if violations:
                found[path] = violations
    assert found == {}


async def test_a_per_user_tool_shows_the_connector_card_and_the_call_resumes_after_connect(
    stack: Stack, env: Idp, browser: Any
) -> None:
    async with admin_client(stack) as admin:
        view = await add_oauth(admin, env.mcp.url, scope="per_user")
        page_ = await complete_consent(stack, view["consent_url"], "org-admin")
        assert page_.status_code == 200, page_.text
        c = view["name"]
        await admin.register(c, [{"name": "whoami"}])
        await admin.profile([f"{c}__whoami"], name="peruser")
    async with signed_in(browser, stack, stack.admin_token) as page:
        await page.goto("/try")
        await page.get_by_label("Run as profile").select_option("peruser")
        await page.get_by_label("Tool").select_option(f"{c}__whoami")
        await page.get_by_label("User").fill("alice")
        await page.get_by_role("button", name="Run").click()
        card = page.locator(f'[data-consent="{c}"]')
        await card.locator('[data-status="connection_required"]').wait_for()
        await shot(page, "try-it-connection-required")
        async with page.context.expect_page():
            await card.get_by_role("button", name="Connect").click()
        await page.locator('[data-outcome="ok"]').wait_for()
        await card.locator('[data-status="connected"]').wait_for()
        await shot(page, "try-it-connected")


async def test_a_connector_whose_tool_listing_is_cached_wears_the_badge(stack: Stack, browser: Any) -> None:
    async with bearer_upstream() as up, admin_client(stack) as admin:
        c = await admin.connector(up.url, up.token)
        bare = await admin.connector(up.url, up.token)  # no tools registered: nothing listed, nothing cached
        await admin.register(c, [{"name": "echo"}, {"name": "add"}])
        async with signed_in(browser, stack, stack.admin_token) as page:
            card = page.locator(f'article[data-connector="{c}"]')
            await card.locator('[data-tools="2"]').wait_for()
            assert await card.locator("[data-cached]").inner_text() == "Cached"
            await page.locator(f'article[data-connector="{bare}"] [data-tools="0"]').wait_for()
            assert await page.locator(f'article[data-connector="{bare}"] [data-cached]').count() == 0
            await shot(page, "connectors-cached")
            # the listing goes to the upstream every time: no badge
            await admin.req("PATCH", "registry", f"/v1/connectors/{c}", json={"cache_enabled": False})
            await page.reload()
            await card.locator('[data-tools="2"]').wait_for()
            assert await card.locator("[data-cached]").count() == 0


async def test_a_static_key_expiring_within_a_week_is_flagged_on_its_card(stack: Stack, browser: Any) -> None:
    soon = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    later = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    async with bearer_upstream() as up, admin_client(stack) as admin:
        near = await admin.connector(up.url, up.token, expires_at=soon)
        far = await admin.connector(up.url, up.token, expires_at=later)
        async with signed_in(browser, stack, stack.admin_token) as page:
            warning = page.locator(f'article[data-connector="{near}"] [role="note"]')
            await warning.wait_for()
            assert f"expires on {soon[:10]}" in await warning.inner_text()
            await page.locator(f'article[data-connector="{far}"]').wait_for()
            assert await page.locator(f'article[data-connector="{far}"] [role="note"]').count() == 0


async def test_the_approval_queue_is_live_from_the_proxy_stream_and_polls_when_the_stream_fails(
    stack: Stack, browser: Any
) -> None:
    async with bearer_upstream() as up, admin_client(stack) as admin:
        c = await admin.connector(up.url, up.token)
        await admin.register(c, [{"name": "delete_note", "auto_approve": False}])
        key = await admin.key(await admin.profile([f"{c}__delete_note"]))
        tool = f"{c}__delete_note"

        async def held_call(note: str) -> Any:
            async with httpx.AsyncClient(timeout=60, headers={"Authorization": f"Bearer {key}"}) as http:
                return await http.post(
                    f"{stack.urls['proxy']}/v1/tools/{tool}/call", json={"arguments": {"note_id": note}}
                )

        async def pending(note: str) -> str | None:
            items = await admin.req("GET", "proxy", "/v1/approvals", params={"status": "pending"})
            return next((a["id"] for a in items if a["tool"] == tool and a["arguments"].get("note_id") == note), None)

        def polls(url: str) -> bool:
            return "/api/s/proxy/v1/approvals?" in url

        def streams(url: str) -> bool:
            return "/api/s/proxy/v1/approvals/stream" in url

        # live: polling is blocked, so whatever shows came by the stream
        async with signed_in(browser, stack, stack.admin_token) as page:
            await page.route(polls, lambda route: route.abort())
            await page.goto("/approvals")
            await page.locator('[data-mode="live"]').wait_for()
            call = asyncio.create_task(held_call("n-live"))
            row = page.locator(f'tr[data-tool="{tool}"]', has_text="n-live")
            await row.wait_for()
            await shot(page, "approvals-live")
            # another admin decides through the API: the row leaves without a reload
            approval = await wait_for(lambda: pending("n-live"), timeout=15)
            await admin.req("POST", "proxy", f"/v1/approvals/{approval}/approve", json={"reason": "ok"})
            await row.wait_for(state="detached")
            assert (await call).status_code == 200

        # the stream refused: the page polls instead
        async with signed_in(browser, stack, stack.admin_token) as page:
            await page.route(
                streams, lambda route: route.fulfill(status=503, body="{}", content_type="application/json")
            )
            await page.goto("/approvals")
            await page.locator('[data-mode="polling"]').wait_for()
            call = asyncio.create_task(held_call("n-polled"))
            row = page.locator(f'tr[data-tool="{tool}"]', has_text="n-polled")
            await row.wait_for()
            await row.get_by_role("button", name="Reject").click()
            await row.wait_for(state="detached")
            assert (await call).status_code == 403
