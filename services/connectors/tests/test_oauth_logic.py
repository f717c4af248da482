"""Pure logic of the OAuth core: PKCE, state, challenges, token responses, registration choice,
and that secrets never show in a repr or an error message."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr, ValidationError
from warden_connectors.oauth import (
    BearerChallenge,
    ClientMetadataDocument,
    ClientRegistration,
    FlowState,
    GuardedHttp,
    InMemoryNonceStore,
    InvalidTokenResponse,
    OAuthServer,
    RegistrationUnavailable,
    StateCodec,
    StateInvalid,
    StateReplayed,
    StaticClient,
    TokenSet,
    UrlPolicy,
    authorization_url,
    challenge_s256,
    new_verifier,
    obtain_client,
    parse_bearer_challenge,
    parse_token_response,
    step_up_scopes,
)
from warden_connectors.oauth.errors import TokenRequestFailed, scrub
from warden_connectors.oauth.rfc7591 import choose_auth_method


def _server(**kw) -> OAuthServer:
    base = {
        "mcp_url": "https://mcp.example.com/mcp",
        "issuer": "https://as.example.com",
        "authorization_endpoint": "https://as.example.com/authorize",
        "token_endpoint": "https://as.example.com/token",
        "resource": "https://mcp.example.com/mcp",
        "scopes": ("files:read",),
    }
    return OAuthServer(**{**base, **kw})


def _client(**kw) -> ClientRegistration:
    base = {
        "issuer": "https://as.example.com",
        "client_id": "warden",
        "client_secret": SecretStr("client-secret-value-123"),
        "token_endpoint_auth_method": "client_secret_basic",
        "source": "static",
        "redirect_uri": "https://warden.example.com/connect/callback",
    }
    return ClientRegistration(**{**base, **kw})


# --- PKCE --------------------------------------------------------------------------------------


def test_pkce_s256_matches_the_rfc_7636_example() -> None:
    assert (
        challenge_s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    )
    v = new_verifier()
    assert 43 <= len(v) <= 128 and v != new_verifier()
    with pytest.raises(ValueError):
        challenge_s256("too-short")


# --- state -------------------------------------------------------------------------------------


async def test_state_round_trips_and_is_single_use() -> None:
    codec = StateCodec(secrets.token_bytes(32), InMemoryNonceStore())
    # a user id long enough that the random ciphertext cannot contain it by chance ("u1" did, ~5 % of runs)
    user = "user-" + "q" * 20
    token, flow = codec.seal(connector_id="c1", user=user, verifier="v" * 50, issuer="https://as",
                             redirect_uri="https://w/cb", scopes=["a", "b"], resource="https://r")  # fmt: skip
    assert "v" * 50 not in token and user not in token  # encrypted, not just signed
    peeked = codec.peek(token)
    assert peeked == flow and peeked.scopes == ("a", "b")
    assert (await codec.consume(token, user=user)).verifier.get_secret_value() == "v" * 50
    with pytest.raises(StateReplayed):
        await codec.consume(token, user=user)


async def test_state_survives_key_rotation_but_not_a_foreign_key() -> None:
    old, new = secrets.token_bytes(32), secrets.token_bytes(32)
    token, _ = StateCodec(old, InMemoryNonceStore()).seal(
        connector_id="c", user="u", verifier="v" * 43, issuer="i", redirect_uri="r"
    )
    assert StateCodec(new, InMemoryNonceStore(), old_keys=[old]).peek(token).connector_id == "c"
    with pytest.raises(StateInvalid):
        StateCodec(new, InMemoryNonceStore()).peek(token)
    with pytest.raises(ValueError):
        StateCodec(b"short", InMemoryNonceStore())


async def test_state_for_another_connector_is_refused() -> None:
    codec = StateCodec(secrets.token_bytes(32), InMemoryNonceStore())
    token, _ = codec.seal(connector_id="c1", user="u", verifier="v" * 43, issuer="i", redirect_uri="r")
    with pytest.raises(StateInvalid):
        await codec.consume(token, user="u", connector_id="c2")


# --- WWW-Authenticate and step-up ----------------------------------------------------------------


def test_bearer_challenge_is_parsed_among_other_challenges() -> None:
    header = (
        'Basic realm="x", Bearer error="insufficient_scope", scope="files:read files:write", '
        'resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp", '
        'error_description="needs \\"write\\""'
    )
    c = parse_bearer_challenge(header)
    assert c is not None and c.insufficient_scope
    assert c.scope == ("files:read", "files:write")
    assert c.resource_metadata == "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
    assert c.error_description == 'needs "write"'
    assert parse_bearer_challenge(["Basic realm=x", "Bearer"]) == BearerChallenge()
    assert parse_bearer_challenge("Basic realm=x") is None
    assert parse_bearer_challenge("bearer scope=a") == BearerChallenge(scope=("a",))


def test_step_up_asks_for_the_union_of_held_and_required_scopes() -> None:
    c = parse_bearer_challenge('Bearer error="insufficient_scope", scope="files:write files:read"')
    assert c is not None
    assert step_up_scopes(("files:read", "offline_access"), c) == ("files:read", "offline_access", "files:write")
    assert step_up_scopes([], ["a", "a"]) == ("a",)


# --- token responses -----------------------------------------------------------------------------


def test_token_response_is_validated_into_absolute_expiry_and_scopes() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    t = parse_token_response(
        {"access_token": "at-123456", "token_type": "bearer", "expires_in": 300, "refresh_token": "rt-123456"},
        requested_scopes=("a", "b"),
        now=now,
    )
    assert t.expires_at == now + timedelta(seconds=300)
    assert t.scope == ("a", "b")  # absent scope = as requested
    assert t.expires_within(301, now) and not t.expires_within(299, now)
    narrowed = parse_token_response({"access_token": "x" * 10, "token_type": "Bearer", "scope": "a"}, now=now)
    assert narrowed.scope == ("a",) and narrowed.expires_at is None
    kept = parse_token_response(
        {"access_token": "x" * 10, "token_type": "Bearer"}, previous_refresh_token=SecretStr("old-refresh")
    )
    assert kept.refresh_token is not None and kept.refresh_token.get_secret_value() == "old-refresh"


@pytest.mark.parametrize(
    "body",
    [
        {"token_type": "Bearer"},
        {"access_token": "", "token_type": "Bearer"},
        {"access_token": "a" * 10, "token_type": "DPoP"},
        {"access_token": "a" * 10},
        {"access_token": "a" * 10, "token_type": "Bearer", "expires_in": -5},
        {"access_token": "a" * 10, "token_type": "Bearer", "expires_in": "soon"},
        {"access_token": "a" * 10, "token_type": "Bearer", "scope": ["a"]},
        {"access_token": "a" * 10, "token_type": "Bearer", "refresh_token": 7},
    ],
)
def test_unusable_token_responses_are_refused(body: dict) -> None:
    with pytest.raises(InvalidTokenResponse) as ei:
        parse_token_response(body)
    assert "a" * 10 not in str(ei.value)


# --- secrets never print -------------------------------------------------------------------------


def test_secrets_never_show_in_reprs_or_messages() -> None:
    tokens = TokenSet(
        access_token=SecretStr("AT-secret-value"),
        refresh_token=SecretStr("RT-secret-value"),
        obtained_at=datetime.now(UTC),
    )
    client = _client(registration_access_token=SecretStr("RAT-secret-value"))
    codec = StateCodec(secrets.token_bytes(32), InMemoryNonceStore())
    req = authorization_url(_server(), client, codec, connector_id="c", user="u")
    flow = codec.peek(req.state)
    verifier = flow.verifier.get_secret_value()
    shown = " ".join(
        [repr(tokens), str(tokens), repr(client), str(client), repr(flow), repr(req), repr(StaticClient(
            client_id="x", client_secret=SecretStr("client-secret-value-123")))]
    )  # fmt: skip
    for secret in ("AT-secret-value", "RT-secret-value", "RAT-secret-value", "client-secret-value-123", verifier):
        assert secret not in shown
    assert isinstance(flow, FlowState)
    err = TokenRequestFailed("refused: " + scrub("code abc-123-code was bad", ["abc-123-code"]))
    assert "abc-123-code" not in str(err) and "abc-123-code" not in repr(err)
    assert err.to_reply().message == "refused: code [redacted] was bad"


# --- authorization request -----------------------------------------------------------------------


def test_authorization_url_carries_pkce_resource_and_no_offline_access_on_plain_oauth() -> None:
    codec = StateCodec(secrets.token_bytes(32), InMemoryNonceStore())
    server = _server(scopes_supported=("files:read", "offline_access"), is_oidc=False, audience="api://x")
    req = authorization_url(server, _client(), codec, connector_id="c", user="u", scopes=["files:write"])
    import httpx

    q = httpx.URL(req.url).params
    assert q["response_type"] == "code" and q["code_challenge_method"] == "S256"
    assert q["code_challenge"] == challenge_s256(req.flow.verifier.get_secret_value())
    assert q["scope"] == "files:read files:write"  # step-up scopes added; not OIDC: no offline_access
    assert q["resource"] == "https://mcp.example.com/mcp" and q["audience"] == "api://x"
    assert "prompt" not in q
    no_resource = authorization_url(server.model_copy(update={"resource": None}), _client(), codec,
                                    connector_id="c", user="u")  # fmt: skip
    assert "resource" not in httpx.URL(no_resource.url).params
    with pytest.raises(ValueError):
        authorization_url(server, _client(), codec, connector_id="c", user="u", extra_params={"state": "mine"})


# --- which client --------------------------------------------------------------------------------


async def test_client_choice_order_static_then_cimd_then_dcr_then_a_clear_error() -> None:
    redirect = "https://warden.example.com/connect/callback"
    doc = ClientMetadataDocument(client_id="https://warden.example.com/oauth/client.json", redirect_uris=(redirect,))
    async with GuardedHttp(UrlPolicy()) as http:
        static = StaticClient(client_id="admin-given", client_secret=SecretStr("s" * 20))
        both = _server(cimd_supported=True, registration_endpoint="https://as.example.com/reg")
        got = await obtain_client(http, both, redirect_uri=redirect, static=static, cimd=doc)
        assert got.source == "static" and got.token_endpoint_auth_method == "client_secret_basic"
        got = await obtain_client(http, both, redirect_uri=redirect, cimd=doc)
        assert got.source == "cimd" and got.client_id == doc.client_id and got.token_endpoint_auth_method == "none"
        with pytest.raises(RegistrationUnavailable) as ei:
            await obtain_client(http, _server(), redirect_uri=redirect, cimd=doc)
    msg = ei.value.message
    assert "client id" in msg and "dynamic client registration" in msg and redirect in msg
    assert ei.value.http_status == 409


def test_client_id_metadata_document_follows_the_draft_rules() -> None:
    doc = ClientMetadataDocument(client_id="https://w.example.com/oauth/client.json", redirect_uris=("https://w/cb",))
    body = doc.model_dump(mode="json", exclude_none=True)
    assert body["client_id"] == "https://w.example.com/oauth/client.json"
    assert body["token_endpoint_auth_method"] == "none"
    assert body["grant_types"] == ["authorization_code", "refresh_token"]
    for bad in ("http://w.example.com/c.json", "https://w.example.com", "https://w.example.com/c#x",
                "https://u:p@w.example.com/c", "https://w.example.com/a/../c"):  # fmt: skip
        with pytest.raises(ValidationError):
            ClientMetadataDocument(client_id=bad, redirect_uris=("https://w/cb",))


def test_dcr_prefers_a_confidential_client_and_static_clients_need_secrets_for_secret_methods() -> None:
    assert choose_auth_method(None) == "client_secret_basic"
    assert choose_auth_method(["none", "client_secret_post"]) == "client_secret_post"
    assert choose_auth_method(["none"]) == "none"
    assert StaticClient(client_id="p").auth_method == "none"
    with pytest.raises(ValidationError):
        StaticClient(client_id="x", token_endpoint_auth_method="client_secret_post")
