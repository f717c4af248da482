"""Static credentials and jwt_passthrough, end to end through the proxy to a real upstream."""

from __future__ import annotations

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
