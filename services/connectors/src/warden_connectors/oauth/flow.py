"""Authorization code + PKCE (S256) and the token endpoint: authorize URL, callback, exchange,
refresh, revoke (RFC 6749, RFC 7636, RFC 8707, RFC 9207, RFC 7009, OAuth 2.1).

Client authentication at the token and revocation endpoints: client_secret_basic (RFC 6749
§2.3.1, form-urlencoded id and secret), client_secret_post, or none (public client).
"""

from __future__ import annotations

import base64
import logging
import secrets as secrets_mod
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import import_key
from pydantic import SecretStr
from warden_common.logging import register_secret

from .client import ClientRegistration
from .discovery import OAuthServer
from .errors import (
    AuthorizationCodeMissing,
    AuthorizationDenied,
    AuthorizationFailed,
    AuthorizationIssuerMismatch,
    BadResponse,
    ClientAuthFailed,
    OAuthError,
    ProviderUnavailable,
    ReauthRequired,
    TokenRequestFailed,
    scrub,
)
from .pkce import challenge_s256, new_verifier
from .state import FlowState, StateCodec
from .tokens import TokenSet, parse_token_response
from .urlguard import GuardedHttp

__all__ = [
    "AuthorizationRequest",
    "RevocationOutcome",
    "RevocationResult",
    "client_credentials",
    "authorization_url",
    "complete",
    "exchange_code",
    "parse_callback",
    "refresh",
    "revoke",
]

log = logging.getLogger("warden.connectors.oauth")

_RESERVED = {
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "resource",
    "audience",
}


@dataclass(frozen=True)
class AuthorizationRequest:
    """Where to send the person, and the flow it belongs to (the verifier is inside, hidden)."""

    url: str
    state: str
    flow: FlowState

    def __repr__(self) -> str:
        return f"AuthorizationRequest(connector_id={self.flow.connector_id!r}, expires_at={self.flow.expires_at})"


def authorization_url(
    server: OAuthServer,
    client: ClientRegistration,
    codec: StateCodec,
    *,
    connector_id: str,
    user: str,
    scopes: Sequence[str] | None = None,
    extra_params: Mapping[str, str] | None = None,
) -> AuthorizationRequest:
    """Build the authorization request. `scopes` adds to the server's (step-up); OIDC servers
    that list `offline_access` get it asked for, with `prompt=consent` as OIDC requires."""
    bad = _RESERVED.intersection(extra_params or {})
    if bad:
        raise ValueError(f"extra_params may not set {sorted(bad)}")
    want = server.scopes_to_request(tuple(scopes or ()))
    verifier = new_verifier()
    state, flow = codec.seal(
        connector_id=connector_id,
        user=user,
        verifier=verifier,
        issuer=server.issuer,
        redirect_uri=client.redirect_uri,
        scopes=want,
        resource=server.resource,
    )
    params: dict[str, str] = {
        "response_type": "code",
        "client_id": client.client_id,
        "redirect_uri": client.redirect_uri,
        "state": state,
        "code_challenge": challenge_s256(verifier),
        "code_challenge_method": "S256",
    }
    if want:
        params["scope"] = " ".join(want)
        if "offline_access" in want and server.is_oidc and "prompt" not in (extra_params or {}):
            params["prompt"] = "consent"
    if server.resource:
        params["resource"] = server.resource
    if server.audience:
        params["audience"] = server.audience
    params.update(extra_params or {})
    parts = urlsplit(server.authorization_endpoint)
    query = f"{parts.query}&{urlencode(params)}" if parts.query else urlencode(params)
    url = urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
    return AuthorizationRequest(url=url, state=state, flow=flow)


def parse_callback(params: Mapping[str, str], server: OAuthServer, flow: FlowState) -> str:
    """Check the authorization response for an already-consumed `flow`; return the code."""
    if flow.issuer.rstrip("/") != server.issuer.rstrip("/"):
        raise AuthorizationIssuerMismatch(
            "the connector's authorization server changed during the consent; start the connection again",
            details={"issuer": server.issuer},
        )
    iss = params.get("iss")
    if server.iss_parameter_supported and not iss:
        raise AuthorizationIssuerMismatch(
            f"the authorization response has no iss although {server.issuer} promises one (RFC 9207); "
            "it may come from another server",
            details={"issuer": server.issuer},
        )
    if iss is not None and iss != server.issuer:
        raise AuthorizationIssuerMismatch(
            f"the authorization response came from issuer {scrub(iss, limit=200)!r}, not {server.issuer!r}; "
            "refusing it (possible mix-up attack)",
            details={"issuer": server.issuer, "iss": scrub(iss, limit=200)},
        )
    error = params.get("error")
    if error:
        code = scrub(error, limit=64)
        desc = scrub(params.get("error_description"), limit=300)
        text = f" ({desc})" if desc else ""
        if error == "access_denied":
            raise AuthorizationDenied(
                f"access was denied at {server.issuer}{text}; nothing was connected", oauth_error=code
            )
        raise AuthorizationFailed(f"{server.issuer} refused the authorization: {code}{text}", oauth_error=code)
    auth_code = params.get("code")
    if not auth_code:
        raise AuthorizationCodeMissing(f"{server.issuer} redirected back without an authorization code")
    register_secret(auth_code)
    return auth_code


def _client_assertion(client: ClientRegistration, audience: str) -> str:
    """RFC 7523 §2.2 client assertion: iss = sub = client_id, aud = the authorization server's
    issuer identifier (what RFC 7523bis recommends), short-lived, single-use jti."""
    if client.private_key is None:
        raise ClientAuthFailed("private_key_jwt is configured but the client has no private key")
    alg = client.signing_alg or "ES256"
    try:
        key = import_key(client.private_key.get_secret_value())
    except (ValueError, TypeError, JoseError):
        raise ClientAuthFailed("the client's private key cannot be read (PEM, EC/RSA/OKP)") from None
    now = int(time.time())
    claims = {
        "iss": client.client_id,
        "sub": client.client_id,
        "aud": audience,
        "iat": now,
        "exp": now + 60,
        "jti": secrets_mod.token_urlsafe(16),
    }
    try:
        return jwt.encode({"alg": alg, "typ": "JWT"}, claims, key, algorithms=[alg])
    except (ValueError, TypeError, JoseError):
        raise ClientAuthFailed(f"the client's private key cannot sign with {alg}") from None


def _client_auth(client: ClientRegistration, form: dict[str, str], audience: str = "") -> dict[str, str]:
    """Add client authentication to `form`; return headers to send."""
    method = client.token_endpoint_auth_method
    if method == "private_key_jwt":
        form["client_id"] = client.client_id
        form["client_assertion_type"] = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        form["client_assertion"] = _client_assertion(client, audience)
        return {}
    secret = client.client_secret.get_secret_value() if client.client_secret else None
    if method == "client_secret_basic":
        if secret is None:
            raise ClientAuthFailed("client_secret_basic is configured but the client has no secret")
        pair = f"{quote(client.client_id, safe='')}:{quote(secret, safe='')}"
        return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}
    form["client_id"] = client.client_id
    if method == "client_secret_post":
        if secret is None:
            raise ClientAuthFailed("client_secret_post is configured but the client has no secret")
        form["client_secret"] = secret
    return {}


async def _token_request(
    http: GuardedHttp,
    server: OAuthServer,
    client: ClientRegistration,
    form: dict[str, str],
    *,
    grant: Literal["authorization_code", "refresh_token", "client_credentials"],
    secrets: Sequence[str | None],
    requested_scopes: Sequence[str],
    previous_refresh_token: SecretStr | None = None,
) -> TokenSet:
    if server.resource:
        form["resource"] = server.resource
    if server.audience:
        form["audience"] = server.audience
    headers = {"Accept": "application/json", **_client_auth(client, form, server.issuer)}
    hide = [*secrets, *client.secrets(), form.get("client_assertion")]
    r = await http.request("POST", server.token_endpoint, data=form, headers=headers)
    if r.status_code >= 500 or r.status_code == 429:
        raise ProviderUnavailable(
            f"the token endpoint of {server.issuer} answered HTTP {r.status_code}; try again later",
            details={"issuer": server.issuer, "status": r.status_code},
        )
    if r.is_redirect:  # not an OAuth error, not a bad body: the endpoint is not where it says
        raise BadResponse(
            f"the token endpoint of {server.issuer}: {r.redirect_message()}",
            details={"issuer": server.issuer, "status": r.status_code},
        )
    if r.status_code != 200:
        try:
            err = r.json_object()
        except BadResponse:
            err = {}
        code = scrub(str(err.get("error") or f"http_{r.status_code}"), hide, limit=64)
        desc = scrub(err.get("error_description"), hide)
        text = f" ({desc})" if desc else ""
        if code == "invalid_client" or (r.status_code == 401 and not err):
            raise ClientAuthFailed(
                f"{server.issuer} did not accept Warden's client {client.client_id!r}{text}; "
                + ("register it again" if client.source == "dcr" else "check the client id, secret and auth method"),
                oauth_error=code,
                details={"issuer": server.issuer},
            )
        if grant == "refresh_token" and code == "invalid_grant":
            raise ReauthRequired(
                f"{server.issuer} no longer accepts the refresh token{text}; the user must connect again",
                oauth_error=code,
                details={"issuer": server.issuer},
            )
        if grant == "authorization_code" and code == "invalid_grant":
            raise TokenRequestFailed(
                f"{server.issuer} refused the authorization code{text}: it expired, was used already, or the PKCE "
                "verifier does not match; start the connection again",
                oauth_error=code,
                details={"issuer": server.issuer},
            )
        raise TokenRequestFailed(
            f"the token endpoint of {server.issuer} refused the request: {code}{text}",
            oauth_error=code,
            details={"issuer": server.issuer},
        )
    return parse_token_response(
        r.json_object(),
        requested_scopes=requested_scopes,
        previous_refresh_token=previous_refresh_token,
        issuer=server.issuer,
    )


async def exchange_code(
    http: GuardedHttp, server: OAuthServer, client: ClientRegistration, code: str, flow: FlowState
) -> TokenSet:
    verifier = flow.verifier.get_secret_value()
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": flow.redirect_uri,
        "code_verifier": verifier,
    }
    return await _token_request(
        http, server, client, form, grant="authorization_code", secrets=(code, verifier), requested_scopes=flow.scopes
    )


async def complete(
    http: GuardedHttp,
    server: OAuthServer,
    client: ClientRegistration,
    codec: StateCodec,
    params: Mapping[str, str],
    *,
    user: str,
) -> tuple[FlowState, TokenSet]:
    """The callback: consume the state (once, same person), check the response, redeem the code.
    Find the connector first with `codec.peek(params["state"]).connector_id`."""
    flow = await codec.consume(params.get("state"), user=user)
    code = parse_callback(params, server, flow)
    return flow, await exchange_code(http, server, client, code, flow)


async def client_credentials(
    http: GuardedHttp,
    server: OAuthServer,
    client: ClientRegistration,
    *,
    scopes: Sequence[str] = (),
) -> TokenSet:
    """An access token for the client itself (OAuth 2.1 §4.2, MCP SEP-1046): no user, no
    consent, no refresh token; asked for again when it nears expiry."""
    form = {"grant_type": "client_credentials"}
    if scopes:
        form["scope"] = " ".join(scopes)
    return await _token_request(
        http, server, client, form, grant="client_credentials", secrets=(), requested_scopes=tuple(scopes)
    )


async def refresh(
    http: GuardedHttp,
    server: OAuthServer,
    client: ClientRegistration,
    refresh_token: SecretStr,
    *,
    scopes: Sequence[str] | None = None,
) -> TokenSet:
    """New tokens from a refresh token. A rotated refresh token replaces the old one (persist it
    before using the access token: the old one is dead); otherwise the old one is kept.
    `invalid_grant` raises ReauthRequired."""
    rt = refresh_token.get_secret_value()
    form = {"grant_type": "refresh_token", "refresh_token": rt}
    if scopes:
        form["scope"] = " ".join(scopes)
    return await _token_request(
        http,
        server,
        client,
        form,
        grant="refresh_token",
        secrets=(rt,),
        requested_scopes=tuple(scopes) if scopes else (),
        previous_refresh_token=refresh_token,
    )


RevocationOutcome = Literal["revoked", "unsupported_token_type", "failed", "no_endpoint"]


@dataclass(frozen=True)
class RevocationResult:
    refresh_token: RevocationOutcome | None = None  # None: there was no such token
    access_token: RevocationOutcome | None = None

    @property
    def complete(self) -> bool:
        return all(o in (None, "revoked") for o in (self.refresh_token, self.access_token))


async def _revoke_one(
    http: GuardedHttp, server: OAuthServer, client: ClientRegistration, token: str, hint: str
) -> RevocationOutcome:
    assert server.revocation_endpoint
    form = {"token": token, "token_type_hint": hint}
    try:
        headers = {"Accept": "application/json", **_client_auth(client, form)}
        r = await http.request("POST", server.revocation_endpoint, data=form, headers=headers)
    except OAuthError as e:
        log.warning("oauth: revoking the %s at %s failed: %s", hint, server.issuer, scrub(e.message, [token]))
        return "failed"
    if r.status_code == 200:
        return "revoked"
    try:
        err = r.json_object().get("error")
    except BadResponse:
        err = None
    if err == "unsupported_token_type":
        # e.g. oidc-provider for JWT access tokens: they cannot be revoked, they expire
        return "unsupported_token_type"
    log.warning(
        "oauth: revoking the %s at %s answered HTTP %s (%s)",
        hint,
        server.issuer,
        r.status_code,
        scrub(str(err), [token]),
    )
    return "failed"


async def revoke(
    http: GuardedHttp,
    server: OAuthServer,
    client: ClientRegistration,
    *,
    refresh_token: SecretStr | None = None,
    access_token: SecretStr | None = None,
) -> RevocationResult:
    """RFC 7009, best effort: the refresh token first (it revokes the grant on most servers),
    then the access token. Never raises for provider trouble; the result says what happened."""
    if not server.revocation_endpoint:
        return RevocationResult(
            refresh_token="no_endpoint" if refresh_token else None,
            access_token="no_endpoint" if access_token else None,
        )
    rt = (
        await _revoke_one(http, server, client, refresh_token.get_secret_value(), "refresh_token")
        if refresh_token
        else None
    )
    at = (
        await _revoke_one(http, server, client, access_token.get_secret_value(), "access_token")
        if access_token
        else None
    )
    return RevocationResult(refresh_token=rt, access_token=at)
