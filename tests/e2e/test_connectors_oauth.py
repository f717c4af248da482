"""OAuth connectors end to end: a real authorization server (oidc-provider), a real MCP server
that validates its JWTs, and the whole Warden stack (connectors, registry, proxy, audit)."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from support.admin import admin_client, agent
from support.connectors import Idp, add_oauth, connect_and_expose, credential, idp, refusal
from support.consent import callback_url, complete_consent, gather_bounded, jwt_claims, open_tokens, stack_bus
from support.oauth import registered_clients
from warden_cli.embedded import Stack, free_port
from warden_common.contracts import CREDENTIALS_GET, CredentialRequest, ErrorCode

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def env(stack: Stack) -> AsyncIterator[Idp]:
    async with idp(stack) as e:
        yield e


def _text(result: Any) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)


# --- the happy paths -----------------------------------------------------------------------


async def test_dcr_add_and_authorize_then_an_agent_calls_through_the_proxy(stack: Stack, env: Idp) -> None:
    async with admin_client(stack) as admin:
        view = await add_oauth(admin, env.mcp.url)
        assert view["status"] == "pending" and view["consent_url"].startswith(env.op.issuer)
        page = await complete_consent(stack, view["consent_url"], "org-admin")
        assert page.status_code == 200 and page.json()["ok"] is True, page.text
        name = view["name"]

        shown = await admin.req("GET", "connectors", f"/v1/connectors/{name}")
        oauth = shown["oauth"]
        assert shown["status"] == "active"
        assert oauth["issuer"] == env.op.issuer and oauth["token_endpoint"].startswith(env.op.issuer)
        assert oauth["client_source"] == "dcr" and oauth["client_secret_stored"] is True and oauth["client_id"]
        assert oauth["redirect_uri"] == callback_url(stack)
        assert "mcp:tools" in oauth["granted_scopes"]

        await admin.register(name, [{"name": "whoami"}])
        key = await admin.key(await admin.profile([f"{name}__whoami"]))
        seen = len(env.mcp.verifier.seen)
        async with agent(stack, key) as client:
            r = await client.call_tool(f"{name}__whoami", {})
        assert not r.is_error and _text(r) == "org-admin"
        assert env.mcp.verifier.seen[seen:] and env.mcp.verifier.seen[-1] == "org-admin"

        test = await admin.req("POST", "connectors", f"/v1/connectors/{name}/test")
        assert test["ok"] is True and "whoami" in test["tools"]
        copied = await admin.req("GET", "connectors", f"/v1/connectors/{name}/json")
        assert copied["connector"]["auth"]["type"] == "oauth2" and copied["connector"]["url"] == env.mcp.url

        tokens = await open_tokens(stack, name)
        assert tokens is not None
        everything = "".join(admin.responses) + page.text
        for secret in (tokens["access_token"], tokens["refresh_token"]):
            assert secret not in everything


@pytest.mark.parametrize("client_id", ["reg-post", "reg-basic", "reg-public"])
async def test_registered_client_connects_with_each_auth_method(stack: Stack, env: Idp, client_id: str) -> None:
    spec = next(c for c in registered_clients(callback_url(stack)) if c["client_id"] == client_id)
    auth: dict[str, Any] = {"client_id": client_id, "token_endpoint_auth_method": spec["token_endpoint_auth_method"]}
    if "client_secret" in spec:
        auth["client_secret"] = spec["client_secret"]
    async with admin_client(stack) as admin:
        name, key = await connect_and_expose(stack, admin, env, f"user-{client_id}", **auth)
        shown = await admin.req("GET", "connectors", f"/v1/connectors/{name}")
        assert shown["oauth"]["client_id"] == client_id and shown["oauth"]["client_source"] == "static"
        assert shown["oauth"]["client_secret_stored"] is ("client_secret" in spec)
        async with agent(stack, key) as client:
            assert _text(await client.call_tool(f"{name}__whoami", {})) == f"user-{client_id}"
        # a forced refresh (what the proxy asks after an upstream 401) authenticates the same way
        before = await env.op.refresh_requests(client_id)
        cred = await credential(stack, name, force=True)
        assert await env.op.refresh_requests(client_id) == before + 1
        assert jwt_claims(cred.headers["Authorization"][7:])["sub"] == f"user-{client_id}"
        if "client_secret" in spec:
            assert spec["client_secret"] not in "".join(admin.responses)


# --- refresh, rotation, single flight ------------------------------------------------------


async def _until_expired(stack: Stack, name: str) -> None:
    """Wait for the clock to pass the access token's expiry (the token's own TTL, bounded)."""
    tokens = await open_tokens(stack, name)
    assert tokens is not None and tokens["expires_at"]
    left = (datetime.fromisoformat(tokens["expires_at"]) - datetime.now(UTC)).total_seconds()
    assert left < 30
    await asyncio.sleep(max(0.0, left) + 0.2)


async def test_refresh_rotates_transparently_after_expiry(stack: Stack) -> None:
    async with idp(stack, at_ttl=4) as short, admin_client(stack) as admin:
        name, key = await connect_and_expose(stack, admin, short, "rita")
        first = await open_tokens(stack, name)
        assert first is not None
        await _until_expired(stack, name)
        async with agent(stack, key) as client:
            assert _text(await client.call_tool(f"{name}__whoami", {})) == "rita"
        second = await open_tokens(stack, name)
        assert second is not None
        assert second["access_token"] != first["access_token"]
        assert second["refresh_token"] != first["refresh_token"]  # rotated, stored
        assert (await short.op.introspect(second["refresh_token"]))["active"] is True
        assert await short.op.refresh_requests() >= 1


async def test_a_refresh_token_used_elsewhere_means_reauth_required(stack: Stack) -> None:
    async with idp(stack, at_ttl=4) as short, admin_client(stack) as admin:
        name, key = await connect_and_expose(
            stack,
            admin,
            short,
            "rhea",
            client_id="reg-post",
            client_secret="reg-post-secret-0123456789",
            token_endpoint_auth_method="client_secret_post",
        )
        tokens = await open_tokens(stack, name)
        assert tokens is not None
        # someone else redeems the refresh token: it rotates, and Warden's copy becomes a reuse
        async with httpx.AsyncClient(trust_env=False) as h:
            r = await h.post(
                f"{short.op.issuer}/token",
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": tokens["refresh_token"],
                    "client_id": "reg-post",
                    "client_secret": "reg-post-secret-0123456789",
                },
            )
            assert r.status_code == 200, r.text
        await _until_expired(stack, name)
        err = await refusal(stack, name)
        assert err.code == ErrorCode.reauth_required
        shown = await admin.req("GET", "connectors", f"/v1/connectors/{name}")
        assert shown["status"] == "reauth_required"
        async with agent(stack, key) as client:
            r2 = await client.call_tool(f"{name}__whoami", {})
        assert r2.is_error and "authorized again" in _text(r2)


@asynccontextmanager
async def second_connectors(stack: Stack) -> AsyncIterator[str]:
    """Another connectors replica, same env (same database, NATS root, keys, callback)."""
    port = free_port()
    orig_port = stack.cfg.ports["connectors"]
    orig_env = dict(stack.cfg.extra_env.get("connectors", {}))
    stack.cfg.ports["connectors"] = port
    stack.cfg.extra_env["connectors"] = {**orig_env, "WARDEN_CONNECTORS_CALLBACK_BASE_URL": stack.urls["connectors"]}
    try:
        proc = stack.start_service("connectors")
    finally:
        stack.cfg.ports["connectors"] = orig_port
        stack.cfg.extra_env["connectors"] = orig_env
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=2) as h, asyncio.timeout(60):
            while True:
                assert proc.popen.poll() is None, proc.log_path.read_text()[-2000:]
                try:
                    if (await h.get(f"{url}/readyz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        yield url
    finally:
        proc.popen.terminate()
        proc.popen.wait(10)
        stack.procs.remove(proc)


async def test_fifty_concurrent_requests_on_two_replicas_refresh_once(stack: Stack) -> None:
    async with idp(stack, at_ttl=6) as short, admin_client(stack) as admin, second_connectors(stack):
        view = await add_oauth(admin, short.mcp.url)
        assert (await complete_consent(stack, view["consent_url"], "sam")).status_code == 200
        name = view["name"]
        client_id = (await admin.req("GET", "connectors", f"/v1/connectors/{name}"))["oauth"]["client_id"]
        old = await open_tokens(stack, name)
        assert old is not None
        await _until_expired(stack, name)
        before = await short.op.refresh_requests(client_id)

        async with stack_bus(stack) as bus:
            started = time.perf_counter()
            answers = await gather_bounded(
                *(bus.request(CREDENTIALS_GET, CredentialRequest(connector=name)) for _ in range(50))
            )
            elapsed = time.perf_counter() - started
        errors = [a for a in answers if isinstance(a, BaseException)]
        assert not errors, errors[:3]
        refreshes = await short.op.refresh_requests(client_id) - before
        new = await open_tokens(stack, name)
        assert new is not None and new["access_token"] != old["access_token"]
        got = {a.headers["Authorization"] for a in answers}
        print(f"\nsingle-flight: 50 concurrent requests, 2 replicas: {refreshes} refresh request(s), {elapsed:.2f}s")
        assert refreshes == 1
        assert got == {f"Bearer {new['access_token']}"}


# --- disconnect, remove ----------------------------------------------------------------------


async def test_disconnect_revokes_at_the_provider_and_every_tool_fails_closed(stack: Stack, env: Idp) -> None:
    async with admin_client(stack) as admin:
        name, key = await connect_and_expose(stack, admin, env, "dora")
        tokens = await open_tokens(stack, name)
        assert tokens is not None
        assert (await env.op.introspect(tokens["refresh_token"]))["active"] is True
        async with agent(stack, key) as client:
            assert _text(await client.call_tool(f"{name}__whoami", {})) == "dora"
            await admin.req("POST", "connectors", f"/v1/connectors/{name}/disconnect")
            assert (await env.op.introspect(tokens["refresh_token"]))["active"] is False
            assert await open_tokens(stack, name) is None
            for tool in ("whoami", "echo"):
                r = await client.call_tool(f"{name}__{tool}", {"text": "x"} if tool == "echo" else {})
                assert r.is_error and "disconnected" in _text(r)
        assert (await refusal(stack, name)).code == ErrorCode.disconnected

        # reconnect: a fresh consent for the same connector brings it back
        again = await admin.req("POST", "connectors", f"/v1/connectors/{name}/reconnect")
        assert (await complete_consent(stack, again["consent_url"], "dora")).status_code == 200
        async with agent(stack, key) as client:
            assert _text(await client.call_tool(f"{name}__whoami", {})) == "dora"

        renewed = await open_tokens(stack, name)
        assert renewed is not None
        await admin.req("DELETE", "connectors", f"/v1/connectors/{name}", expect=200)
        assert (await env.op.introspect(renewed["refresh_token"]))["active"] is False


# --- per-user connections ----------------------------------------------------------------------


async def test_per_user_tokens_are_isolated_and_a_missing_connection_answers_a_consent_url(
    stack: Stack, env: Idp
) -> None:
    async with admin_client(stack) as admin:
        view = await add_oauth(admin, env.mcp.url, authorize=False, scope="per_user")
        name = view["name"]
        path = f"/v1/connectors/{name}/connections"
        assert (await admin.req("GET", "connectors", f"{path}/alice"))["status"] == "connection_required"
        for user in ("alice", "bob"):
            started = await admin.req("POST", "connectors", f"{path}/{user}/consent")
            assert (await admin.req("GET", "connectors", f"{path}/{user}"))["status"] == "verifying"
            page = await complete_consent(stack, started["consent_url"], user)
            assert page.status_code == 200 and page.json()["user"] == user
            assert (await admin.req("GET", "connectors", f"{path}/{user}"))["status"] == "connected"

        subs = {}
        for user in ("alice", "bob"):
            cred = await credential(stack, name, user)
            subs[user] = jwt_claims(cred.headers["Authorization"][7:])["sub"]
        assert subs == {"alice": "alice", "bob": "bob"}

        err = await refusal(stack, name, "carol")
        assert err.code == ErrorCode.consent_required and err.details["consent_url"].startswith(
            f"{stack.urls['connectors']}/connect/start/"
        )
        # carol's consent URL puts tokens in carol's slot only, whoever logs in at the provider
        page = await complete_consent(stack, err.details["consent_url"], "carol")
        assert page.status_code == 200 and page.json()["user"] == "carol"
        assert jwt_claims((await credential(stack, name, "carol")).headers["Authorization"][7:])["sub"] == "carol"

        # bob disconnects his own connection: revoked; alice keeps hers
        bob = await open_tokens(stack, name, "bob")
        assert bob is not None
        out = await admin.req("DELETE", "connectors", f"{path}/bob")
        assert out["status"] == "connection_required"
        assert (await env.op.introspect(bob["refresh_token"]))["active"] is False
        assert (await refusal(stack, name, "bob")).code == ErrorCode.consent_required
        assert jwt_claims((await credential(stack, name, "alice")).headers["Authorization"][7:])["sub"] == "alice"


# --- the CLI -----------------------------------------------------------------------------------


async def _cli(stack: Stack, *args: str, stdin: bytes | None = None) -> asyncio.subprocess.Process:
    import os
    import sys

    env = {**os.environ, "WARDEN_CONNECTORS_URL": stack.urls["connectors"], "WARDEN_ADMIN_TOKEN": stack.admin_token}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "warden_connectors.cli",
        *args,
        env={**env, "COLUMNS": "200"},
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def _cli_run(stack: Stack, *args: str, stdin: bytes | None = None) -> tuple[int, str]:
    proc = await _cli(stack, *args, stdin=stdin)
    async with asyncio.timeout(60):
        so, se = await proc.communicate(stdin)
    return proc.returncode or 0, so.decode() + se.decode()


async def test_cli_add_waits_for_the_consent_then_show_disconnect_remove(stack: Stack, env: Idp) -> None:
    name = "cli" + secrets.token_hex(3)
    proc = await _cli(stack, "add", "--name", name, "--mcp-server-url", env.mcp.url, "--dcr", "--wait-timeout", "60")
    assert proc.stdout is not None
    async with asyncio.timeout(60):
        while True:
            line = (await proc.stdout.readline()).decode()
            assert line, "the CLI ended without printing a consent URL"
            if line.startswith(env.op.issuer):
                consent = line.strip()
                break
        page = await complete_consent(stack, consent, "cli-user")
        assert page.status_code == 200
        rest = (await proc.stdout.read()).decode()
        assert await proc.wait() == 0 and f"{name} is connected" in rest

    code, text = await _cli_run(stack, "show", name)
    assert code == 0 and '"status": "active"' in text and env.op.issuer in text
    code, text = await _cli_run(stack, "list")
    assert code == 0 and name in text
    code, text = await _cli_run(stack, "disconnect", name)
    assert code == 0 and "disconnected" in text
    code, text = await _cli_run(stack, "remove", name, stdin=b"not-the-name\n")
    assert code == 1 and "not removed" in text
    code, text = await _cli_run(stack, "remove", name, stdin=f"{name}\n".encode())
    assert code == 0 and f"removed {name}" in text
    code, text = await _cli_run(stack, "show", name)
    assert code == 1 and "404" in text
