"""What an admin gives us, checked and split: URL policy, and auth specs into non-secret
config and secret material (sealed by the service)."""

from __future__ import annotations

import ipaddress
import uuid
from typing import Any
from urllib.parse import urlsplit

from warden_connectors.errors import BadInput
from warden_connectors.models import (
    ApiKeyAuth,
    AuthSpec,
    BearerAuth,
    CustomHeadersAuth,
    JwtPassthroughAuth,
    NoAuth,
    OAuth2Auth,
)
from warden_connectors.passthrough import new_keypair

__all__ = ["check_url", "secret_aad", "split_auth"]


def check_url(url: str, *, allow_insecure: bool) -> str:
    """Static policy for a URL an admin gives us. (Fetch-time guards resolve DNS too.)"""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise BadInput("url must be an absolute http(s) URL")
    if parts.username or parts.password:
        raise BadInput("url must not carry credentials; use the auth settings instead")
    if parts.fragment:
        raise BadInput("url must not have a fragment")
    if allow_insecure:
        return url
    if parts.scheme != "https":
        raise BadInput(
            "url must use https (plain http is accepted only in a development run: `warden run`, or "
            "WARDEN_CONNECTORS_ALLOW_INSECURE_URLS=true)"
        )
    host = parts.hostname
    shown = f"{parts.scheme}://{parts.netloc}{parts.path}"[:200]  # no query: it may carry a key
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if host == "localhost" or host.endswith(".localhost"):
            raise BadInput(f"url {shown} points at this machine; refused outside a development run") from None
        return url
    if not ip.is_global:
        raise BadInput(
            f"url {shown} points at {ip}, a private, loopback or link-local address; Warden only connects to "
            "public addresses"
        )
    return url


def secret_aad(cid: uuid.UUID) -> str:
    return f"connectors/secret/{cid}"


def split_auth(auth: AuthSpec) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(non-secret config, secret material or None)."""
    match auth:
        case NoAuth():
            return {}, None
        case BearerAuth(token=t):
            return {}, {"token": t.get_secret_value()}
        case ApiKeyAuth(header=h, key=k):
            return {"header": h}, {"key": k.get_secret_value()}
        case CustomHeadersAuth(headers=hs):
            return {"header_names": sorted(hs)}, {"headers": {k: v.get_secret_value() for k, v in hs.items()}}
        case JwtPassthroughAuth():
            pem, public = new_keypair()
            cfg = {
                "header_names": sorted(auth.headers),
                "site_public_jwk": auth.site_public_jwk,
                "audience": auth.audience,
                "issuer": auth.issuer,
                "warden_public_jwk": public,
            }
            return cfg, {"jwe_private_key": pem, "header_templates": auth.headers}
        case OAuth2Auth():
            cfg = auth.model_dump(exclude={"type", "client_secret", "private_key", "extra_headers"}, exclude_none=True)
            cfg["extra_header_names"] = sorted(auth.extra_headers)
            secret: dict[str, Any] = {}
            if auth.client_secret is not None:
                secret["client_secret"] = auth.client_secret.get_secret_value()
            if auth.private_key is not None:
                secret["private_key"] = auth.private_key.get_secret_value()
            if auth.extra_headers:
                secret["headers"] = {k: v.get_secret_value() for k, v in auth.extra_headers.items()}
            return cfg, secret or None
    raise BadInput("unknown auth type")
