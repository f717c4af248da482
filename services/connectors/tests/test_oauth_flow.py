"""Consent, tokens, refresh, revoke and the attacks on them, against a real authorization server
(oidc-provider) and a real OAuth-protected MCP server."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx2
import pytest
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from pydantic import SecretStr
from support.oauth import REDIRECT_URI, follow_consent, registered_clients
from support.oidc import OidcProvider, oidc_provider
from support.protected_mcp import ProtectedMcp, protected_mcp
from warden_connectors.oauth import (
    AuthorizationDenied,
    AuthorizationIssuerMismatch,
    ClientAuthFailed,
    ClientRegistration,
    GuardedHttp,
    InMemoryNonceStore,
    OAuthServer,
    ProviderUnavailable,
    ReauthRequired,
    StateCodec,
    StateExpired,
    StateInvalid,
    StateReplayed,
    StateUserMismatch,
    StaticClient,
    TokenRequestFailed,
    TokenSet,
    UrlPolicy,
    authorization_url,
    complete,
    discover,
    exchange_code,
    obtain_client,
    parse_callback,
    refresh,
    revoke,
)


@dataclass
class Env:
    op: OidcProvider
    mcp: ProtectedMcp
    http: GuardedHttp
    server: OAuthServer
    codec: StateCodec


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[Env]:
    async with oidc_provider(clients=registered_clients()) as op, protected_mcp(op.issuer) as mcp:
        async with GuardedHttp(UrlPolicy.development()) as http:
            server = await discover(http, mcp.url)
            codec = StateCodec(secrets.token_bytes(32), InMemoryNonceStore())
            yield Env(op, mcp, http, server, codec)


async def _dcr_client(env: Env) -> ClientRegistration:
    return await obtain_client(env.http, env.server, redirect_uri=REDIRECT_URI)


async def _connect(
    env: Env, client: ClientRegistration, user: str = "alice", connector: str = "c1", codec: StateCodec | None = None
) -> TokenSet:
    codec = codec or env.codec
    req = authorization_url(
        env.server, client, codec, connector_id=connector, user=user, extra_params={"login_hint": user}
    )
    params = await follow_consent(req.url)
    assert codec.peek(params["state"]).connector_id == connector
    flow, tokens = await complete(env.http, env.server, client, codec, params, user=user)
    assert flow.connector_id == connector
    return tokens


async def _whoami(mcp_url: str, tokens: TokenSet) -> str:
    http = httpx2.AsyncClient(headers=tokens.authorization_header(), timeout=30)
    try:
        async with Client(streamable_http_client(mcp_url, http_client=http)) as c:
            result = await c.call_tool("whoami", {})
            return result.content[0].text  # type: ignore[union-attr]
    finally:
        await http.aclose()


# --- happy paths -----------------------------------------------------------------------------


async def test_dcr_consent_gives_a_token_the_protected_mcp_server_accepts(env: Env) -> None:
    client = await _dcr_client(env)
    assert client.source == "dcr" and client.token_endpoint_auth_method == "client_secret_basic"
    tokens = await _connect(env, client, user="alice")

    assert tokens.refresh_token is not None
    assert tokens.expires_at is not None and tokens.expires_at > datetime.now(UTC)
    assert "mcp:tools" in tokens.scope
    assert await _whoami(env.mcp.url, tokens) == "alice"


@pytest.mark.parametrize("client_id", ["reg-post", "reg-basic", "reg-public"])
async def test_registered_client_connects_with_its_auth_method(env: Env, client_id: str) -> None:
    spec = next(c for c in registered_clients() if c["client_id"] == client_id)
    static = StaticClient(
        client_id=client_id,
        client_secret=SecretStr(spec["client_secret"]) if "client_secret" in spec else None,
        token_endpoint_auth_method=spec["token_endpoint_auth_method"],
    )
    client = await obtain_client(env.http, env.server, redirect_uri=REDIRECT_URI, static=static)
    assert client.source == "static"
    tokens = await _connect(env, client, user=f"user-{client_id}")
    assert await _whoami(env.mcp.url, tokens) == f"user-{client_id}"

    renewed = await refresh(env.http, env.server, client, tokens.refresh_token)  # type: ignore[arg-type]
    assert await _whoami(env.mcp.url, renewed) == f"user-{client_id}"


async def test_registered_client_with_a_wrong_secret_is_refused_as_client_auth_failure(env: Env) -> None:
    good = await obtain_client(
        env.http,
        env.server,
        redirect_uri=REDIRECT_URI,
        static=StaticClient(client_id="reg-post", client_secret=SecretStr("reg-post-secret-0123456789"),
                            token_endpoint_auth_method="client_secret_post"),
    )  # fmt: skip
    req = authorization_url(env.server, good, env.codec, connector_id="c1", user="bob")
    params = await follow_consent(req.url)
    bad = good.model_copy(update={"client_secret": SecretStr("not-the-secret-at-all")})
    with pytest.raises(ClientAuthFailed) as ei:
        await complete(env.http, env.server, bad, env.codec, params, user="bob")
    assert "not-the-secret-at-all" not in str(ei.value) and params["code"] not in str(ei.value)


async def test_offline_access_is_asked_for_on_an_oidc_server_that_lists_it(env: Env) -> None:
    client = await _dcr_client(env)
    assert env.server.is_oidc
    req = authorization_url(env.server, client, env.codec, connector_id="c1", user="carol")
    query = httpx2.URL(req.url).params
    assert query["scope"].split() == ["mcp:tools", "offline_access"]
    assert query["resource"] == env.mcp.url
    assert query["code_challenge_method"] == "S256"
    assert query["prompt"] == "consent"


async def test_refresh_rotates_the_refresh_token_and_the_old_one_then_needs_reauth(env: Env) -> None:
    client = await _dcr_client(env)
    tokens = await _connect(env, client, user="dave")
    before = await env.op.refresh_requests(client.client_id)

    renewed = await refresh(env.http, env.server, client, tokens.refresh_token)  # type: ignore[arg-type]
    assert renewed.refresh_token is not None
    assert renewed.refresh_token.get_secret_value() != tokens.refresh_token.get_secret_value()  # type: ignore[union-attr]
    assert renewed.access_token.get_secret_value() != tokens.access_token.get_secret_value()
    assert await _whoami(env.mcp.url, renewed) == "dave"
    assert await env.op.refresh_requests(client.client_id) == before + 1

    # reusing a rotated refresh token revokes the grant: the user must consent again
    with pytest.raises(ReauthRequired) as ei:
        await refresh(env.http, env.server, client, tokens.refresh_token)  # type: ignore[arg-type]
    assert ei.value.oauth_error == "invalid_grant" and ei.value.code == "reauth_required"
    with pytest.raises(ReauthRequired):
        await refresh(env.http, env.server, client, renewed.refresh_token)


async def test_revoke_makes_the_refresh_token_inactive_and_tolerates_jwt_access_tokens(env: Env) -> None:
    client = await _dcr_client(env)
    tokens = await _connect(env, client, user="erin")
    assert tokens.refresh_token is not None
    assert (await env.op.introspect(tokens.refresh_token.get_secret_value()))["active"] is True

    result = await revoke(
        env.http, env.server, client, refresh_token=tokens.refresh_token, access_token=tokens.access_token
    )
    assert result.refresh_token == "revoked"
    assert result.access_token in ("revoked", "unsupported_token_type")  # oidc-provider: JWTs are not revocable
    assert (await env.op.introspect(tokens.refresh_token.get_secret_value()))["active"] is False
    with pytest.raises(ReauthRequired):
        await refresh(env.http, env.server, client, tokens.refresh_token)


# --- attacks and refusals --------------------------------------------------------------------


async def test_access_denied_by_the_user_is_a_typed_readable_error(env: Env) -> None:
    client = await _dcr_client(env)
    req = authorization_url(env.server, client, env.codec, connector_id="c1", user="frank",
                            extra_params={"login_hint": "deny"})  # fmt: skip
    params = await follow_consent(req.url)
    assert params["error"] == "access_denied"
    with pytest.raises(AuthorizationDenied) as ei:
        await complete(env.http, env.server, client, env.codec, params, user="frank")
    assert ei.value.oauth_error == "access_denied"
    assert "denied" in ei.value.message and "Traceback" not in ei.value.message
    assert ei.value.http_status == 403 and not ei.value.retryable


async def test_forged_state_is_refused(env: Env) -> None:
    client = await _dcr_client(env)
    req = authorization_url(env.server, client, env.codec, connector_id="c1", user="gina",
                            extra_params={"login_hint": "gina"})  # fmt: skip
    params = await follow_consent(req.url)
    other = StateCodec(secrets.token_bytes(32), InMemoryNonceStore())  # another key: a forger's
    forged, _ = other.seal(connector_id="c1", user="gina", verifier="v" * 43, issuer=env.server.issuer,
                           redirect_uri=REDIRECT_URI)  # fmt: skip
    for bad in (forged, "garbage", "", params["state"][:-4] + "AAAA"):
        with pytest.raises(StateInvalid):
            await complete(env.http, env.server, client, env.codec, {**params, "state": bad}, user="gina")
    # the genuine state still works: refusals do not burn it
    _, tokens = await complete(env.http, env.server, client, env.codec, params, user="gina")
    assert await _whoami(env.mcp.url, tokens) == "gina"


async def test_replayed_state_is_refused(env: Env) -> None:
    client = await _dcr_client(env)
    req = authorization_url(env.server, client, env.codec, connector_id="c1", user="hank")
    params = await follow_consent(req.url)
    await complete(env.http, env.server, client, env.codec, params, user="hank")
    with pytest.raises(StateReplayed):
        await complete(env.http, env.server, client, env.codec, params, user="hank")


async def test_expired_state_is_refused(env: Env) -> None:
    now = [time.time()]
    codec = StateCodec(secrets.token_bytes(32), InMemoryNonceStore(), clock=lambda: now[0])
    client = await _dcr_client(env)
    req = authorization_url(env.server, client, codec, connector_id="c1", user="ivan")
    params = await follow_consent(req.url)
    now[0] += 601
    with pytest.raises(StateExpired) as ei:
        await complete(env.http, env.server, client, codec, params, user="ivan")
    assert "10 minutes" in ei.value.message


async def test_the_state_lifetime_follows_the_setting(env: Env) -> None:
    now = [time.time()]
    codec = StateCodec(secrets.token_bytes(32), InMemoryNonceStore(), ttl_s=120, clock=lambda: now[0])
    client = await _dcr_client(env)
    req = authorization_url(env.server, client, codec, connector_id="c1", user="ivan")
    assert req.flow.expires_at - req.flow.issued_at == 120
    params = await follow_consent(req.url)
    now[0] += 121
    with pytest.raises(StateExpired) as ei:
        await complete(env.http, env.server, client, codec, params, user="ivan")
    assert "2 minutes" in ei.value.message


async def test_state_from_another_person_is_refused(env: Env) -> None:
    client = await _dcr_client(env)
    req = authorization_url(env.server, client, env.codec, connector_id="c1", user="judy")
    params = await follow_consent(req.url)
    with pytest.raises(StateUserMismatch):
        await complete(env.http, env.server, client, env.codec, params, user="mallory")


async def test_wrong_pkce_verifier_is_refused_by_the_authorization_server(env: Env) -> None:
    client = await _dcr_client(env)
    req = authorization_url(env.server, client, env.codec, connector_id="c1", user="kim")
    params = await follow_consent(req.url)
    flow = await env.codec.consume(params["state"], user="kim")
    wrong = flow.model_copy(update={"verifier": SecretStr("w" * 64)})
    with pytest.raises(TokenRequestFailed) as ei:
        await exchange_code(env.http, env.server, client, parse_callback(params, env.server, flow), wrong)
    assert ei.value.oauth_error == "invalid_grant"
    assert "w" * 64 not in str(ei.value) and params["code"] not in str(ei.value)


async def test_mismatched_iss_in_the_authorization_response_is_refused(env: Env) -> None:
    assert env.server.iss_parameter_supported
    client = await _dcr_client(env)
    for tamper in ({"iss": "https://evil.example"}, {"iss": None}):
        req = authorization_url(env.server, client, env.codec, connector_id="c1", user="leo")
        params = await follow_consent(req.url)
        assert params["iss"] == env.server.issuer
        bad = {k: v for k, v in {**params, **tamper}.items() if v is not None}
        with pytest.raises(AuthorizationIssuerMismatch):
            await complete(env.http, env.server, client, env.codec, bad, user="leo")


async def test_authorization_server_down_is_a_retryable_typed_error(env: Env) -> None:
    async with oidc_provider(at_ttl=120, rt_ttl=600) as op:
        async with protected_mcp(op.issuer) as mcp:
            server = await discover(env.http, mcp.url)
            client = await obtain_client(env.http, server, redirect_uri=REDIRECT_URI)
            tokens = await _connect(Env(op, mcp, env.http, server, env.codec), client, user="mia")
    assert tokens.expires_at is not None and tokens.expires_within(121) and not tokens.expires_within(100)
    # both are gone now: the AS refuses connections
    with pytest.raises(ProviderUnavailable) as ei:
        await refresh(env.http, server, client, tokens.refresh_token)  # type: ignore[arg-type]
    assert ei.value.retryable and ei.value.http_status == 503
    assert tokens.refresh_token.get_secret_value() not in str(ei.value)  # type: ignore[union-attr]
    # revocation stays best effort
    result = await revoke(env.http, server, client, refresh_token=tokens.refresh_token)
    assert result.refresh_token == "failed" and not result.complete


async def test_client_id_metadata_document_is_used_when_the_server_supports_it(tmp_path) -> None:
    import socket

    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from support.protected_mcp import serve_on_loopback
    from support.tls import loopback_cert
    from warden_connectors.oauth import ClientMetadataDocument

    cert = loopback_cert(tmp_path)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    doc = ClientMetadataDocument(
        client_id=f"https://127.0.0.1:{sock.getsockname()[1]}/oauth/client.json", redirect_uris=(REDIRECT_URI,)
    )
    served = []

    async def document(request):
        served.append(request.url.path)
        return JSONResponse(doc.model_dump(mode="json", exclude_none=True))

    app = Starlette(routes=[Route("/oauth/client.json", document)])
    async with serve_on_loopback(app, sock, ssl_certfile=str(cert.cert_path), ssl_keyfile=str(cert.key_path)):
        env_vars = {"CIMD": "1", "NODE_EXTRA_CA_CERTS": str(cert.cert_path)}
        async with oidc_provider(env=env_vars) as op, protected_mcp(op.issuer) as mcp:
            async with GuardedHttp(UrlPolicy.development()) as http:
                server = await discover(http, mcp.url)
                assert server.cimd_supported
                client = await obtain_client(http, server, redirect_uri=REDIRECT_URI, cimd=doc)
                assert client.source == "cimd" and client.client_id == doc.client_id and client.client_secret is None
                codec = StateCodec(secrets.token_bytes(32), InMemoryNonceStore())
                tokens = await _connect(Env(op, mcp, http, server, codec), client, user="nina", codec=codec)
                assert await _whoami(mcp.url, tokens) == "nina"
                assert tokens.refresh_token is not None
                renewed = await refresh(http, server, client, tokens.refresh_token)
                assert await _whoami(mcp.url, renewed) == "nina"
    sock.close()
    assert served  # the authorization server fetched Warden's document


async def test_no_secret_reaches_a_log_line_during_a_whole_connection(env: Env, caplog) -> None:
    import logging

    caplog.set_level(logging.DEBUG)
    client = await _dcr_client(env)
    req = authorization_url(env.server, client, env.codec, connector_id="c1", user="olga",
                            extra_params={"login_hint": "olga"})  # fmt: skip
    ours = caplog.text
    caplog.clear()
    params = await follow_consent(req.url)  # the browser's own logs show the code in its URL: not ours
    caplog.clear()
    _, tokens = await complete(env.http, env.server, client, env.codec, params, user="olga")
    renewed = await refresh(env.http, env.server, client, tokens.refresh_token)  # type: ignore[arg-type]
    await revoke(env.http, env.server, client, refresh_token=renewed.refresh_token, access_token=renewed.access_token)
    text = ours + caplog.text
    assert "oauth" in text and "/token" in text  # something was logged
    for secret in (
        *tokens.secrets(),
        *renewed.secrets(),
        *client.secrets(),
        params["code"],
        req.flow.verifier.get_secret_value(),
    ):
        assert secret not in text
