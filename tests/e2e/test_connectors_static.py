"""Static credentials and jwt_passthrough, end to end through the proxy to a real upstream."""

from __future__ import annotations

import json
import secrets
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from joserfc import jwe, jwt
from joserfc.jwe import JWERegistry
from joserfc.jwk import RSAKey
from support.admin import admin_client
from support.infra import wait_for
from support.upstream import header_upstream
from warden_cli.embedded import Stack

pytestmark = pytest.mark.e2e


async def _call(stack: Stack, key: str, tool: str, args: dict, headers: dict | None = None) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as h:
        return await h.post(
            f"{stack.urls['proxy']}/v1/tools/{tool}/call",
            json={"arguments": args},
            headers={"Authorization": f"Bearer {key}", **(headers or {})},
        )


async def test_api_key_and_custom_headers_reach_upstream_and_never_come_back(stack: Stack) -> None:
    secret = "k3y-" + "x" * 20
    async with (
        header_upstream(lambda h: h.get(b"x-test-key") == secret.encode()) as (url, gate),
        admin_client(stack) as admin,
    ):
        c = await admin.connector(url, None)
        await admin.req(
            "PATCH",
            "connectors",
            f"/v1/connectors/{c}",
            json={"auth": {"type": "api_key", "header": "X-Test-Key", "key": secret}},
        )
        await admin.register(c, [{"name": "echo"}])
        p = await admin.profile([f"{c}__echo"])
        key = await admin.key(p)
        r = await _call(stack, key, f"{c}__echo", {"text": "via api key"})
        assert r.status_code == 200 and r.json()["content"][0]["text"] == "via api key"
        shown = await admin.req("GET", "connectors", f"/v1/connectors/{c}")
        assert shown["secret_stored"] is True and shown["auth_config"] == {"header": "X-Test-Key"}
        assert secret not in "".join(admin.responses) and secret not in r.text

        async def last_used() -> bool:  # the call is recorded as the connector's last use
            return (await admin.req("GET", "connectors", f"/v1/connectors/{c}"))["last_used_at"] is not None

        assert await wait_for(last_used, timeout=5)


async def test_static_credential_expiry_warns_then_refuses(stack: Stack) -> None:
    async with header_upstream(lambda h: True) as (url, _), admin_client(stack) as admin:
        c = await admin.connector(
            url, "tok-" + "y" * 20, expires_at=(datetime.now(UTC) + timedelta(days=3)).isoformat()
        )
        shown = await admin.req("GET", "connectors", f"/v1/connectors/{c}")
        assert shown["warnings"] and "expires on" in shown["warnings"][0]
        await admin.register(c, [{"name": "echo"}])
        key = await admin.key(await admin.profile([f"{c}__echo"]))
        assert (await _call(stack, key, f"{c}__echo", {"text": "ok"})).status_code == 200
        await admin.req(
            "PATCH",
            "connectors",
            f"/v1/connectors/{c}",
            json={"expires_at": (datetime.now(UTC) - timedelta(minutes=1)).isoformat()},
        )
        r = await _call(stack, key, f"{c}__echo", {"text": "late"})
        assert r.status_code >= 400 and "expired" in r.text


async def test_bad_connector_input_gets_an_actionable_4xx(stack: Stack) -> None:
    async with admin_client(stack) as admin:
        r = await admin.http.post(
            f"{stack.urls['connectors']}/v1/connectors",
            json={"name": "Bad Name", "url": "ftp://x", "auth": {"type": "bearer", "token": "s3cr3t-value"}},
        )
        assert r.status_code == 400 and "name" in r.json()["error"]["message"] and "s3cr3t-value" not in r.text
        r = await admin.http.post(
            f"{stack.urls['connectors']}/v1/connectors",
            json={"name": "okname", "url": "https://user:pw@example.com/mcp"},
        )
        assert r.status_code == 400 and "credentials" in r.json()["error"]["message"]
        r = await admin.http.post(
            f"{stack.urls['connectors']}/v1/connectors",
            json={
                "name": "hdr",
                "url": "https://example.com/mcp",
                "auth": {"type": "custom_headers", "headers": {"Host": "evil"}},
            },
        )
        assert r.status_code == 400
        r = await admin.http.get(f"{stack.urls['connectors']}/v1/connectors", headers={"Authorization": "Bearer nope"})
        assert r.status_code == 401


def _site_token(site: RSAKey, warden_jwk: dict, aud: str, exp_in: int) -> str:
    inner = jwt.encode({"alg": "RS256"}, {"sub": "alice", "aud": aud, "exp": int(time.time()) + exp_in}, site)
    reg = JWERegistry(algorithms=["RSA-OAEP-256", "A256GCM"])
    return jwe.encrypt_compact(
        {"alg": "RSA-OAEP-256", "enc": "A256GCM", "cty": "JWT"},
        inner.encode(),
        RSAKey.import_key(warden_jwk),
        registry=reg,
    )


async def test_jwt_passthrough_decrypts_verifies_and_substitutes_the_site_token(stack: Stack) -> None:
    site = RSAKey.generate_key(2048)
    strict = {"on": False}

    def check(h: dict[bytes, bytes]) -> bool:
        return not strict["on"] or h.get(b"authorization", b"").startswith(b"Bearer ey")

    async with header_upstream(check) as (url, gate), admin_client(stack) as admin:
        # register the tools while the upstream is open, then switch the connector to passthrough
        c = await admin.connector(url, None)
        await admin.register(c, [{"name": "echo"}])
        key = await admin.key(await admin.profile([f"{c}__*"]))
        view = await admin.req(
            "PATCH",
            "connectors",
            f"/v1/connectors/{c}",
            json={
                "auth": {
                    "type": "jwt_passthrough",
                    "audience": "warden-test",
                    "site_public_jwk": site.as_dict(private=False),
                    "headers": {"Authorization": "Bearer %{jwt_token}"},
                }
            },
        )
        strict["on"] = True
        warden_jwk = view["auth_config"]["warden_public_jwk"]
        assert "d" not in warden_jwk and view["secret_stored"] is True

        good = _site_token(site, warden_jwk, "warden-test", 120)
        ok = await _call(stack, key, f"{c}__echo", {"text": "as alice"}, {"X-Warden-JWE": good})
        assert ok.status_code == 200 and ok.json()["content"][0]["text"] == "as alice", ok.text
        sent = gate.seen[-1][b"authorization"].decode()
        assert sent.startswith("Bearer ey") and sent.count(".") == 2  # the inner JWT, not the JWE

        # the audit names the user the site vouched for (its JWT's `sub`), though the key names none
        async def completed() -> dict | None:
            page = await admin.req(
                "GET", "audit", "/v1/events", params={"type": "call.completed", "tool": f"{c}__echo"}
            )
            return page["items"][0] if page["items"] else None

        done = await wait_for(completed, timeout=30)
        assert done["refs"]["user"] == "alice", done["refs"]

        refused = []
        for bad in (
            _site_token(site, warden_jwk, "warden-test", -120),  # expired
            _site_token(site, warden_jwk, "someone-else", 120),  # wrong audience
            _site_token(RSAKey.generate_key(2048), warden_jwk, "warden-test", 120),  # not the site's signature
            None,  # no token at all
        ):
            r = await _call(stack, key, f"{c}__echo", {"text": "x"}, {"X-Warden-JWE": bad} if bad else {})
            assert r.status_code >= 400 or r.json().get("is_error"), r.text
            refused.append(r.text)
        assert good not in "".join(refused) and sent[7:] not in "".join(refused)


async def _cli(stack: Stack, *args: str, stdin: bytes = b"", env: dict[str, str] | None = None) -> tuple[int, str]:
    import asyncio
    import os
    import sys

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "warden_connectors.cli",
        *args,
        env={
            **os.environ,
            "WARDEN_CONNECTORS_URL": stack.urls["connectors"],
            "WARDEN_ADMIN_TOKEN": stack.admin_token,
            "COLUMNS": "200",
            **(env or {}),
        },
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        so, se = await proc.communicate(stdin)
    return proc.returncode or 0, so.decode() + se.decode()


async def test_cli_adds_static_connectors_whose_secret_never_shows(stack: Stack) -> None:
    """`warden connectors add --auth bearer|api-key|headers|none`: the secret from stdin or the
    environment (never argv), sealed, working through the proxy, in no output."""
    bearer, api_key, hdr = "tok-" + "b" * 24, "key-" + "k" * 24, "hdr-" + "h" * 24
    seen: list[dict[bytes, bytes]] = []

    def check(h: dict[bytes, bytes]) -> bool:
        seen.append(h)
        return True

    async with header_upstream(check) as (url, _), admin_client(stack) as admin:
        b, k, h, n = ("s" + secrets.token_hex(3) for _ in range(4))
        expiry = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
        code, text = await _cli(
            stack, "add", "--name", b, "--mcp-server-url", url, "--auth", "bearer", "--secret-stdin",
            "--expires-at", expiry, stdin=bearer.encode(),
        )  # fmt: skip
        assert code == 0 and f"added {b} (bearer): active, expires {expiry}" in text, text
        code, text = await _cli(
            stack, "add", "--name", k, "--mcp-server-url", url, "--auth", "api-key", "--api-key-header", "X-Test-Key",
            env={"WARDEN_STATIC_SECRET": api_key},
        )  # fmt: skip
        assert code == 0 and "active" in text, text
        code, text = await _cli(
            stack, "add", "--name", h, "--mcp-server-url", url, "--auth", "headers", "--header", "X-Team-Token",
            "--secret-stdin", stdin=json.dumps({"X-Team-Token": hdr}).encode(),
        )  # fmt: skip
        assert code == 0 and "active" in text, text
        code, text = await _cli(stack, "add", "--name", n, "--mcp-server-url", url, "--auth", "none")
        assert code == 0 and "active" in text, text
        for c in (b, k, h, n):
            await admin.register(c, [{"name": "echo"}])
        key = await admin.key(await admin.profile([f"{c}__echo" for c in (b, k, h, n)]))
        for c in (b, k, h, n):
            r = await _call(stack, key, f"{c}__echo", {"text": c})
            assert r.status_code == 200, r.text
        sent = [dict(x) for x in seen]
        assert any(x.get(b"authorization") == f"Bearer {bearer}".encode() for x in sent)
        assert any(x.get(b"x-test-key") == api_key.encode() for x in sent)
        assert any(x.get(b"x-team-token") == hdr.encode() for x in sent)
        code, text = await _cli(stack, "show", b)
        assert code == 0 and '"secret_stored": true' in text and bearer not in text
        for c in (k, h):
            code, text = await _cli(stack, "json", c)
            assert code == 0 and api_key not in text and hdr not in text
        # mistakes are usage errors that name the fix
        code, text = await _cli(stack, "add", "--name", "x1", "--mcp-server-url", url, "--auth", "basic")
        assert code == 2 and "oauth2, none, bearer, api-key or headers" in text
        code, text = await _cli(
            stack, "add", "--name", "x2", "--mcp-server-url", url, "--auth", "headers", "--header", "X-A",
            "--secret-stdin", stdin=b'{"X-B": "v"}',
        )  # fmt: skip
        assert code == 2 and "no value given for X-A" in text
        code, text = await _cli(
            stack, "add", "--name", "x3", "--mcp-server-url", url, "--auth", "bearer", "--secret-stdin",
            "--expires-at", "next week", stdin=b"t",
        )  # fmt: skip
        assert code == 2 and "ISO 8601" in text
        code, text = await _cli(stack, "--help")
        assert "add, list, show, json, test, disconnect, reconnect, remove" in text  # no `authorize` command
        assert "authorize" not in text.split("Commands")[1]


async def test_an_expired_static_credential_is_expired_and_needs_attention(stack: Stack) -> None:
    async with header_upstream(lambda h: True) as (url, _), admin_client(stack) as admin:
        c = await admin.connector(
            url, "tok-" + "e" * 20, expires_at=(datetime.now(UTC) + timedelta(days=1)).isoformat()
        )
        assert (await admin.req("GET", "connectors", f"/v1/connectors/{c}"))["status"] == "active"
        await admin.req(
            "PATCH",
            "connectors",
            f"/v1/connectors/{c}",
            json={"expires_at": (datetime.now(UTC) - timedelta(minutes=1)).isoformat()},
        )
        shown = await admin.req("GET", "connectors", f"/v1/connectors/{c}")
        assert shown["status"] == "expired" and "expired" in shown["status_reason"]
        attention = await admin.req("GET", "connectors", "/v1/connectors", params={"status": "needs_attention"})
        assert c in {x["name"] for x in attention}
        active = await admin.req("GET", "connectors", "/v1/connectors", params={"status": "active"})
        assert c not in {x["name"] for x in active}


async def test_a_registered_client_with_a_secret_method_needs_its_secret(stack: Stack) -> None:
    async with admin_client(stack) as admin:
        r = await admin.http.post(
            f"{stack.urls['connectors']}/v1/connectors",
            json={
                "name": "nosecret",
                "url": "https://example.com/mcp",
                "auth": {"type": "oauth2", "client_id": "abc", "token_endpoint_auth_method": "client_secret_post"},
            },
        )
        assert r.status_code == 400 and "needs the client_secret" in r.json()["error"]["message"]
