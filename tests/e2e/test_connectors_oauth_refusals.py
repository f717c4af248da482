"""OAuth connectors end to end, the refusals: forged, replayed and expired states, a wrong PKCE
verifier or issuer at the callback, a consent denied at the provider, an authorization server that
is down and SSRF targets, against a real authorization server (oidc-provider) and the whole stack."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from support.admin import Admin, admin_client
from support.connectors import Idp, add_oauth, idp
from support.consent import callback_url, complete_consent, connectors_db, hit_callback, open_tokens, provider_redirect
from warden_cli.embedded import Stack, free_port

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def env(stack: Stack) -> AsyncIterator[Idp]:
    async with idp(stack) as e:
        yield e


async def _fresh_consent(stack: Stack, admin: Admin, env: Idp) -> tuple[str, str]:
    view = await add_oauth(admin, env.mcp.url)
    return view["name"], view["consent_url"]


async def test_forged_replayed_and_expired_states_are_refused_readably(stack: Stack, env: Idp) -> None:
    from warden_common.settings import CryptoSettings
    from warden_connectors.app import state_key
    from warden_connectors.oauth import InMemoryNonceStore, StateCodec
    from warden_connectors.settings import Settings

    async with admin_client(stack) as admin:
        name, url = await _fresh_consent(stack, admin, env)
        params = await provider_redirect(stack, url, "mallory")

        forged = await hit_callback(stack, {**params, "state": "w1." + secrets.token_urlsafe(60)})
        assert forged.status_code == 400 and "not valid" in forged.json()["message"]

        ok = await hit_callback(stack, params)
        assert ok.status_code == 200
        replayed = await hit_callback(stack, params)
        assert replayed.status_code == 400 and "already used" in replayed.json()["message"]

        # an expired state, sealed with the service's own key 11 minutes ago
        keys = CryptoSettings(keys=stack.crypto_keys).load()  # type: ignore[arg-type]
        settings = Settings.model_construct(state_key=None)
        old = StateCodec(state_key(settings, keys), InMemoryNonceStore(), clock=lambda: time.time() - 660)
        shown = await admin.req("GET", "connectors", f"/v1/connectors/{name}")
        stale, _ = old.seal(
            connector_id=shown["id"],
            user="",
            verifier=secrets.token_urlsafe(48),
            issuer=env.op.issuer,
            redirect_uri=callback_url(stack),
        )
        expired = await hit_callback(stack, {**params, "state": stale})
        assert expired.status_code == 400 and "expired" in expired.json()["message"]
        for page in (forged, replayed, expired):
            assert params["code"] not in page.text and "Traceback" not in page.text


async def test_wrong_pkce_verifier_and_mismatched_iss_are_refused(stack: Stack, env: Idp) -> None:
    from warden_common.settings import CryptoSettings
    from warden_connectors.app import state_key
    from warden_connectors.oauth import InMemoryNonceStore, StateCodec
    from warden_connectors.settings import Settings

    async with admin_client(stack) as admin:
        name, url = await _fresh_consent(stack, admin, env)
        params = await provider_redirect(stack, url, "eve")

        wrong_iss = await hit_callback(stack, {**params, "iss": "http://127.0.0.1:9/evil"})
        assert wrong_iss.status_code == 400 and "issuer" in wrong_iss.json()["message"]

        # a state the service would accept, but carrying another PKCE verifier than the one
        # the code was issued for (an attacker who could mint states still cannot redeem codes)
        name2, url2 = await _fresh_consent(stack, admin, env)
        params2 = await provider_redirect(stack, url2, "eve")
        keys = CryptoSettings(keys=stack.crypto_keys).load()  # type: ignore[arg-type]
        codec = StateCodec(state_key(Settings.model_construct(state_key=None), keys), InMemoryNonceStore())
        real = codec.peek(params2["state"])
        other, flow = codec.seal(
            connector_id=real.connector_id,
            user=real.user,
            verifier=secrets.token_urlsafe(48),
            issuer=real.issuer,
            redirect_uri=real.redirect_uri,
            scopes=real.scopes,
            resource=real.resource,
        )
        async with connectors_db(stack) as db:
            await db.execute(
                "INSERT INTO oauth_flows (nonce, connector_id, user_key, expires_at)"
                " VALUES ($1, $2::uuid, '', now() + interval '5 minutes')",
                flow.nonce,
                real.connector_id,
            )
        pkce = await hit_callback(stack, {**params2, "state": other})
        assert pkce.status_code == 424 and "PKCE" in pkce.json()["message"], pkce.text
        assert params2["code"] not in pkce.text
        assert await open_tokens(stack, name2) is None and await open_tokens(stack, name) is None


async def test_access_denied_lands_on_a_readable_page_and_marks_the_connector(stack: Stack, env: Idp) -> None:
    async with admin_client(stack) as admin:
        name, url = await _fresh_consent(stack, admin, env)
        page = await complete_consent(stack, url, "deny")
        assert page.status_code == 403 and "denied" in page.json()["message"]
        html = await hit_callback(stack, {"state": "nope"})
        assert html.status_code == 400
        async with httpx.AsyncClient(trust_env=False) as h:
            r = await h.get(callback_url(stack), params={"state": "nope"})
        assert r.status_code == 400 and r.headers["content-type"].startswith("text/html") and "<h1" in r.text
        shown = await admin.req("GET", "connectors", f"/v1/connectors/{name}")
        assert shown["status"] == "error" and "denied" in shown["status_reason"]


async def test_authorization_server_down_and_ssrf_targets_are_refused(stack: Stack, env: Idp) -> None:
    async with admin_client(stack) as admin:
        down = free_port()
        r = await admin.http.post(
            f"{stack.urls['connectors']}/v1/connectors?authorize=true",
            json={
                "name": "o" + secrets.token_hex(4),
                "url": env.mcp.url,
                "auth": {"type": "oauth2", "issuer": f"http://127.0.0.1:{down}"},
            },
        )
        assert r.status_code in (503, 504) and "127.0.0.1" in r.json()["error"]["message"], r.text
        for url, auth in (
            ("http://169.254.169.254/mcp", {}),
            (env.mcp.url, {"issuer": "http://10.0.0.1/"}),
            (env.mcp.url, {"token_endpoint": "http://192.168.1.1/token", "issuer": env.op.issuer}),
        ):
            r = await admin.http.post(
                f"{stack.urls['connectors']}/v1/connectors?authorize=true",
                json={"name": "o" + secrets.token_hex(4), "url": url, "auth": {"type": "oauth2", **auth}},
            )
            assert r.status_code == 400 and "refused" in r.json()["error"]["message"], r.text
