"""Dynamic Client Registration (RFC 7591)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import SecretStr

from .client import AuthMethod, ClientRegistration
from .discovery import OAuthServer
from .errors import BadResponse, ProviderUnavailable, RegistrationRejected, scrub
from .urlguard import GuardedHttp

__all__ = ["choose_auth_method", "register_client"]

log = logging.getLogger("warden.connectors.oauth")

_PREFERENCE: tuple[AuthMethod, ...] = ("client_secret_basic", "client_secret_post", "none")


def choose_auth_method(supported: Sequence[str] | None) -> AuthMethod:
    """Warden keeps secrets server-side, so a confidential client is preferred.
    RFC 8414: an absent list means client_secret_basic."""
    if not supported:
        return "client_secret_basic"
    for m in _PREFERENCE:
        if m in supported:
            return m
    raise RegistrationRejected(
        "the authorization server supports none of client_secret_basic, client_secret_post or none "
        f"for its token endpoint (it lists {', '.join(supported)[:200]})"
    )


async def register_client(
    http: GuardedHttp,
    server: OAuthServer,
    *,
    redirect_uri: str,
    client_name: str = "Warden",
    client_uri: str | None = None,
    auth_method: AuthMethod | None = None,
) -> ClientRegistration:
    if not server.registration_endpoint:
        raise RegistrationRejected(f"{server.issuer} has no registration endpoint")
    method = auth_method or choose_auth_method(server.token_endpoint_auth_methods)
    body: dict[str, Any] = {
        "client_name": client_name,
        "redirect_uris": [redirect_uri],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": method,
    }
    if client_uri:
        body["client_uri"] = client_uri
    # No `scope`: servers such as oidc-provider treat a registered scope as the most the client
    # may ever ask for, which would make every later scope step-up fail with invalid_scope. The
    # scopes are asked for in each authorization request instead.
    r = await http.request("POST", server.registration_endpoint, json_body=body, headers={"Accept": "application/json"})
    if r.status_code >= 500 or r.status_code == 429:
        raise ProviderUnavailable(
            f"client registration at {server.registration_endpoint} answered HTTP {r.status_code}",
            details={"issuer": server.issuer},
        )
    if r.is_redirect:
        raise RegistrationRejected(
            f"client registration at {server.registration_endpoint}: {r.redirect_message()}",
            details={"issuer": server.issuer, "status": r.status_code},
        )
    if r.status_code not in (200, 201):
        try:
            err = r.json_object()
        except BadResponse:
            err = {}
        code = str(err.get("error") or f"http_{r.status_code}")[:100]
        desc = scrub(err.get("error_description"))
        raise RegistrationRejected(
            f"{server.issuer} refused dynamic client registration: {code}"
            + (f" ({desc})" if desc else "")
            + "; register a client with the provider and give its client id and secret",
            oauth_error=code,
            details={"issuer": server.issuer},
        )
    info = r.json_object()
    client_id = info.get("client_id")
    if not isinstance(client_id, str) or not client_id:
        raise RegistrationRejected(f"{server.issuer} answered a registration without client_id")
    secret = info.get("client_secret")
    granted = info.get("token_endpoint_auth_method") or method
    if granted not in _PREFERENCE:
        raise RegistrationRejected(f"{server.issuer} registered us with unsupported auth method {granted!r}")
    if granted != "none" and not secret:
        raise RegistrationRejected(f"{server.issuer} registered a confidential client without a secret")
    expires = info.get("client_secret_expires_at")
    rat = info.get("registration_access_token")
    reg = ClientRegistration(
        issuer=server.issuer,
        client_id=client_id,
        client_secret=SecretStr(secret) if secret else None,
        token_endpoint_auth_method=granted,
        source="dcr",
        redirect_uri=redirect_uri,
        client_secret_expires_at=datetime.fromtimestamp(expires, UTC) if isinstance(expires, int) and expires else None,
        registration_access_token=SecretStr(rat) if isinstance(rat, str) and rat else None,
        registration_client_uri=info.get("registration_client_uri"),
    )
    log.info("oauth: registered client %s at %s (%s)", reg.client_id, server.issuer, granted)
    return reg
