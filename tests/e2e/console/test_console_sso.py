"""Single sign-on at the console, in a real browser, with the real oidc-provider as the issuer the
proxy trusts (WARDEN_PROXY_JWT_ISSUER): an admin-scoped person lands on Connectors and acts under
their own name; a person without the scope is an end user (403 on admin pages); an answer with a
tampered state, another issuer's `iss`, from another browser or with another sign-in's code opens
no session."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
from support.admin import admin_client
from support.browser import CHROMIUM, shot
from support.infra import isolated_stack, wait_for
from support.oauth import follow_consent
from support.oidc import OidcProvider, oidc_provider
from warden_cli.embedded import Stack

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium (apt-get install chromium; .ci/run does)"),
]
T = 30_000  # every wait in the browser is bounded (ms)
END_USER = "uma"  # the issuer never grants her warden:admin


@pytest.fixture(scope="module")
async def sso(
    nats_url: str, admin_dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[Stack, OidcProvider]]:
    async with oidc_provider(env={"WITHHOLD_SCOPES": json.dumps({END_USER: ["warden:admin"]})}) as op:
        root_token = "adm-" + secrets.token_urlsafe(24)
        env = {
            "proxy": {"WARDEN_PROXY_JWT_ISSUER": op.issuer, "WARDEN_PROXY_JWT_DEFAULT_PROFILE": "sso-people"},
            "console": {
                "WARDEN_CONSOLE_OIDC__ISSUER": op.issuer,
                "WARDEN_CONSOLE_OIDC__ALLOW_INSECURE_HTTP": "true",  # the test issuer is plain http on loopback
                "WARDEN_CONSOLE_ADMIN_TOKEN": root_token,
            },
        }
        data = Path(tmp_path_factory.mktemp("warden-console-sso"))
        async with isolated_stack(nats_url, admin_dsn, data, env, admin_token=root_token) as stack:
            yield stack, op


@asynccontextmanager
async def browser_context(browser: Any, stack: Stack) -> AsyncIterator[Any]:
    context = await browser.new_context(base_url=stack.urls["console"], viewport={"width": 1280, "height": 900})
    context.set_default_timeout(T)
    try:
        yield context
    finally:
        await context.close()


async def _issuer_answer(context: Any, stack: Stack) -> str:
    """Start a sign-in in this browser (its flow cookie lands in the context) and play the person
    at the issuer's login and consent, stopping at the issuer's redirect back: that URL, unopened.
    (Playwright cannot hold a navigation that arrives by redirect, hence the issuer's part here.)"""
    r = await context.request.get("/login/oidc", max_redirects=0)
    assert r.status == 303, await r.text()
    callback = f"{stack.urls['console']}/login/oidc/callback"
    params = await follow_consent(r.headers["location"], redirect_uri=callback)
    return f"{callback}?{urlencode(params)}"


def _with(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    q = dict(parse_qsl(parts.query))
    q.update(changes)
    return urlunsplit(parts._replace(query=urlencode(q)))


async def test_an_admin_signs_in_through_the_issuer_and_acts_under_their_own_name(
    sso: tuple[Stack, OidcProvider], browser: Any
) -> None:
    stack, op = sso
    async with browser_context(browser, stack) as context:
        page = await context.new_page()
        await page.goto("/login")
        link = page.get_by_role("link", name=f"Sign in with {urlsplit(op.issuer).netloc}")
        await shot(page, "login-sso")
        await link.click()  # the issuer's login and consent (login_hint picks the person)
        await page.wait_for_url("**/connectors")
        assert "test-user" in await page.locator(".who").inner_text()
        session = await page.evaluate("async () => (await fetch('/api/session')).json()")
        assert session["role"] == "admin" and session["via"] == "oidc" and session["label"] == "test-user"
        # only the session id reaches the browser, in an httpOnly SameSite=Strict cookie
        cookies = {c["name"]: c for c in await context.cookies()}
        assert cookies["warden_session"]["httpOnly"] and cookies["warden_session"]["sameSite"] == "Strict"
        assert "warden_oidc" not in cookies
        profile = "sso" + secrets.token_hex(3)
        status = await page.evaluate(
            """async ([csrf, name]) => (await fetch('/api/s/registry/v1/profiles', {method: 'POST',
                headers: {'Content-Type': 'application/json', 'X-CSRF-Token': csrf},
                body: JSON.stringify({name, description: 'made by an SSO admin'})})).status""",
            [session["csrf"], profile],
        )
        assert status == 201
        await shot(page, "connectors-sso-admin")
        text = await page.content()
    assert stack.admin_token not in text
    async with admin_client(stack) as admin:

        async def by_name() -> Any:
            page_ = await admin.req("GET", "audit", "/v1/events", params={"type": "profile.*", "profile": profile})
            return [e for e in page_["items"] if e["actor"] == {"kind": "admin", "id": "test-user"}]

        assert await wait_for(by_name, timeout=15)


async def test_a_person_without_the_admin_scope_is_an_end_user_refused_on_admin_pages(
    sso: tuple[Stack, OidcProvider], browser: Any
) -> None:
    stack, _ = sso
    async with browser_context(browser, stack) as context:
        page = await context.new_page()
        await page.goto(f"/login/oidc?login_hint={END_USER}")
        await page.wait_for_url("**/me")
        assert END_USER in await page.locator(".who").inner_text()
        # My connections, through the proxy with her access token
        mine = await page.evaluate("async () => { const r = await fetch('/api/me/connections'); return r.status; }")
        assert mine == 200
        for path in ("/connectors", "/approvals", "/audit"):
            r = await page.goto(path)
            assert r is not None and r.status == 403, path
            assert "403" in await page.locator("h1").inner_text()
        await shot(page, "forbidden-sso-user")
        r = await page.request.get("/api/s/connectors/v1/connectors")
        assert r.status == 403


async def test_a_tampered_state_another_issuers_answer_or_another_browser_opens_no_session(
    sso: tuple[Stack, OidcProvider], browser: Any
) -> None:
    stack, _ = sso
    async with browser_context(browser, stack) as context:
        page = await context.new_page()
        callback = await _issuer_answer(context, stack)
        state = dict(parse_qsl(urlsplit(callback).query))["state"]

        tampered = await page.goto(_with(callback, state=state[:-2] + ("AA" if not state.endswith("AA") else "BB")))
        assert tampered is not None and tampered.status == 400
        assert "unknown, used or expired" in await page.locator("[role=alert]").inner_text()

        foreign = await page.goto(_with(callback, iss="http://127.0.0.1:9/another-issuer"))
        assert foreign is not None and foreign.status == 403
        assert "another issuer" in await page.locator("[role=alert]").inner_text()
        await shot(page, "sso-refused")

        # that state is spent: the genuine answer, replayed, opens nothing either
        replayed = await page.goto(callback)
        assert replayed is not None and replayed.status == 400
        r = await page.goto("/connectors")
        assert r is not None and page.url.endswith("/login")

        # a genuine answer opened in another browser (no flow cookie): refused, and spent
        callback = await _issuer_answer(context, stack)
        async with browser_context(browser, stack) as other:
            elsewhere = await other.new_page()
            r = await elsewhere.goto(callback)
            assert r is not None and r.status == 403
            assert "another browser" in await elsewhere.locator("[role=alert]").inner_text()
            r = await elsewhere.goto("/connectors")
            assert r is not None and elsewhere.url.endswith("/login")
        again = await page.goto(callback)
        assert again is not None and again.status == 400

        # one sign-in's code delivered with another's state: the issuer refuses it (PKCE)
        first = await _issuer_answer(context, stack)
        second = await _issuer_answer(context, stack)  # the flow cookie is the second's now
        swapped = await page.goto(_with(second, code=dict(parse_qsl(urlsplit(first).query))["code"]))
        assert swapped is not None and swapped.status == 401
        assert "refused the code" in await page.locator("[role=alert]").inner_text()
        r = await page.goto("/connectors")
        assert r is not None and page.url.endswith("/login")
