"""From an MCP server URL to everything needed to ask for consent.

1. Probe the MCP URL without a token; a 401's `WWW-Authenticate: Bearer resource_metadata=...`
   (and `scope=...`) is the first hint.
2. Protected resource metadata (RFC 9728): the hinted URL, else the path-aware well-known URI,
   then the root one. Its `resource` must be this server.
3. Authorization server metadata for `authorization_servers[0]` (or the issuer override):
   RFC 8414 with path insertion, then OpenID Connect discovery (both path variants).
   S256 must be advertised.
   No protected resource metadata but a 401 Bearer challenge (MCP 2025-03-26): the MCP
   server's origin is the issuer; without its metadata, `/authorize`, `/token`, `/register`.
4. Overrides (`OAuthOverrides`) replace any discovered value; with enough overrides a missing
   document is not an error.

`DiscoveryCache` keeps results per (MCP URL, overrides) for a TTL; the service owns one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field
from warden_common.rfc6750 import BearerChallenge, parse_bearer_challenge

from .errors import (
    BadResponse,
    DiscoveryFailed,
    IssuerMismatch,
    MetadataInvalid,
    PkceUnsupported,
    ProviderUnavailable,
    UrlRefused,
)
from .rfc8414 import AuthorizationServerMetadata, metadata_urls, parse_as_metadata
from .rfc9728 import ProtectedResourceMetadata, check_resource, parse_prm, prm_urls
from .urlguard import GuardedHttp, check_url, refused_in

__all__ = ["DiscoveryCache", "OAuthOverrides", "OAuthServer", "discover"]

log = logging.getLogger("warden.connectors.oauth")

_MCP_PROBE = {
    "jsonrpc": "2.0",
    "id": 0,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "warden-discovery", "version": "0.1"},
    },
}


class OAuthOverrides(BaseModel):
    """Admin-supplied values that win over discovery. `scopes` replaces the discovered scopes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    issuer: str | None = None
    authorization_endpoint: str | None = None
    token_endpoint: str | None = None
    registration_endpoint: str | None = None
    revocation_endpoint: str | None = None
    audience: str | None = None
    resource: str | None = None
    omit_resource: bool = False  # for providers that reject RFC 8707 `resource`
    scopes: tuple[str, ...] | None = None


class OAuthServer(BaseModel):
    """The resolved picture of one connector's authorization server. Cacheable, no secrets."""

    model_config = ConfigDict(frozen=True)

    mcp_url: str
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    registration_endpoint: str | None = None
    revocation_endpoint: str | None = None
    resource: str | None = Field(default=None, description="RFC 8707 resource; None = not sent")
    audience: str | None = None
    scopes: tuple[str, ...] = ()
    is_oidc: bool = False
    iss_parameter_supported: bool = False
    cimd_supported: bool = False
    token_endpoint_auth_methods: tuple[str, ...] | None = None
    scopes_supported: tuple[str, ...] | None = None
    prm: ProtectedResourceMetadata | None = None
    metadata: AuthorizationServerMetadata | None = None

    def scopes_to_request(self, extra: tuple[str, ...] = ()) -> tuple[str, ...]:
        """The scopes for an authorization request: ours, plus `offline_access` on OIDC servers
        that list it (without it OIDC servers may issue no refresh token)."""
        scopes = list(dict.fromkeys([*self.scopes, *extra]))
        if self.is_oidc and "offline_access" in (self.scopes_supported or ()) and "offline_access" not in scopes:
            scopes.append("offline_access")
        return tuple(scopes)


async def _probe(http: GuardedHttp, mcp_url: str) -> BearerChallenge | None:
    """POST an unauthenticated initialize; return the Bearer challenge of a 401, if any."""
    try:
        r = await http.request(
            "POST",
            mcp_url,
            headers={"Accept": "application/json, text/event-stream", "Content-Type": "application/json"},
            json_body=_MCP_PROBE,
            follow_redirects=False,
        )
    except BadResponse:
        return None
    if r.status_code != 401:
        log.info("oauth discovery: %s answered %s without a token; trying well-known URIs", mcp_url, r.status_code)
        return None
    return parse_bearer_challenge(r.headers.get_list("www-authenticate"))


async def _fetch_prm(http: GuardedHttp, mcp_url: str, hint: str | None) -> ProtectedResourceMetadata | None:
    candidates = ([hint] if hint else []) + prm_urls(mcp_url)
    for url in dict.fromkeys(candidates):
        r = await http.request("GET", url, headers={"Accept": "application/json"})
        if r.status_code == 200:
            prm = parse_prm(r)
            check_resource(prm, mcp_url)
            return prm
        if r.status_code >= 500 or r.status_code == 429:
            raise ProviderUnavailable(f"{url} answered HTTP {r.status_code}", details={"url": url})
        log.debug("oauth discovery: no protected resource metadata at %s (%s)", url, r.status_code)
    return None


def _check(url: str, http: GuardedHttp, what: str) -> None:
    try:
        check_url(url, http.policy)
    except UrlRefused as e:
        raise refused_in(e, what) from None


async def _fetch_asm(http: GuardedHttp, issuer: str, *, legacy: bool = False) -> AuthorizationServerMetadata | None:
    _check(issuer, http, "the issuer (authorization server)")
    for url, openid in metadata_urls(issuer):
        r = await http.request("GET", url, headers={"Accept": "application/json"})
        if r.status_code == 200:
            try:
                return parse_as_metadata(r, issuer, openid=openid)
            except IssuerMismatch as e:
                # 2025-03-26: the origin's own document is authoritative; accept an issuer on
                # that same origin (e.g. `<origin>/oauth`), nothing else
                claimed = str(e.details.get("issuer", ""))
                if not legacy or urlsplit(claimed)[:2] != urlsplit(issuer)[:2]:
                    raise
                return parse_as_metadata(r, claimed, openid=openid)
        if r.status_code >= 500 or r.status_code == 429:
            raise ProviderUnavailable(f"{url} answered HTTP {r.status_code}", details={"url": url})
        log.debug("oauth discovery: no authorization server metadata at %s (%s)", url, r.status_code)
    return None


async def discover(
    http: GuardedHttp,
    mcp_url: str,
    overrides: OAuthOverrides | None = None,
    *,
    challenge: BearerChallenge | None = None,
    probe: bool = True,
) -> OAuthServer:
    """Discover the authorization server of `mcp_url` and apply `overrides`.

    `challenge` is a Bearer challenge already in hand (e.g. from a 401 the proxy saw); with
    `probe=False` and no challenge, discovery starts from the well-known URIs.
    """
    ov = overrides or OAuthOverrides()
    _check(mcp_url, http, "the MCP server URL")
    if challenge is None and probe:
        challenge = await _probe(http, mcp_url)

    prm = await _fetch_prm(http, mcp_url, challenge.resource_metadata if challenge else None)
    issuer = ov.issuer or (prm.authorization_servers[0] if prm and prm.authorization_servers else None)
    # MCP 2025-03-26 back-compat: a server that answers 401 Bearer but has no protected resource
    # metadata is its own authorization server (metadata at its origin, else default paths)
    legacy = issuer is None and prm is None and challenge is not None
    if legacy:
        parts = urlsplit(mcp_url)
        issuer = f"{parts.scheme}://{parts.netloc}"
    if issuer is None:
        where = "has no protected resource metadata" if prm is None else "names no authorization server"
        raise DiscoveryFailed(
            f"{mcp_url} {where}; set the connector's issuer (and endpoints) explicitly",
            details={"mcp_url": mcp_url},
        )

    md = await _fetch_asm(http, issuer, legacy=legacy)
    fallback = legacy and md is None
    authz = ov.authorization_endpoint or (md.authorization_endpoint if md else None)
    token = ov.token_endpoint or (md.token_endpoint if md else None)
    if fallback:
        log.info("oauth discovery: %s has no metadata; using the 2025-03-26 default endpoints", issuer)
        authz, token = authz or f"{issuer}/authorize", token or f"{issuer}/token"
    if md is None and not (authz and token):
        raise DiscoveryFailed(
            f"no authorization server metadata for {issuer}; set the authorization and token endpoints explicitly",
            details={"issuer": issuer},
        )
    if not authz or not token:
        raise MetadataInvalid(
            f"authorization server {issuer} advertises no {'authorization' if not authz else 'token'} endpoint",
            details={"issuer": issuer},
        )
    if md is not None and "S256" not in (md.code_challenge_methods_supported or ()):
        # MCP authorization spec: refuse to proceed without advertised PKCE S256
        raise PkceUnsupported(
            f"authorization server {issuer} does not advertise PKCE S256 (code_challenge_methods_supported)",
            details={"issuer": issuer},
        )
    registration = ov.registration_endpoint or (md.registration_endpoint if md else None)
    if fallback and registration is None:
        registration = f"{issuer}/register"
    revocation = ov.revocation_endpoint or (md.revocation_endpoint if md else None)
    for kind, url in (
        ("authorization endpoint", authz),
        ("token endpoint", token),
        ("registration endpoint", registration),
        ("revocation endpoint", revocation),
    ):
        if url:  # early, readable refusal naming the endpoint; every fetch is checked again anyway
            _check(url, http, f"the {kind} of {issuer}")

    if ov.omit_resource:
        resource = None
    else:
        resource = ov.resource or (prm.resource if prm else mcp_url)
    if ov.scopes is not None:
        scopes = tuple(ov.scopes)
    elif challenge is not None and challenge.scope:
        scopes = challenge.scope  # MCP spec: the 401's scope first, then the PRM's scopes_supported
    elif prm is not None and prm.scopes_supported:
        scopes = tuple(prm.scopes_supported)
    else:
        scopes = ()
    return OAuthServer(
        mcp_url=mcp_url,
        issuer=md.issuer if md else issuer,
        resource=resource,
        audience=ov.audience,
        scopes=scopes,
        is_oidc=md.is_oidc if md else False,
        iss_parameter_supported=md.authorization_response_iss_parameter_supported if md else False,
        cimd_supported=md.client_id_metadata_document_supported if md else False,
        token_endpoint_auth_methods=md.token_endpoint_auth_methods_supported if md else None,
        scopes_supported=md.scopes_supported if md else None,
        prm=prm,
        metadata=md,
        authorization_endpoint=authz,
        token_endpoint=token,
        registration_endpoint=registration,
        revocation_endpoint=revocation,
    )


class DiscoveryCache:
    """Discovery results per (MCP URL, overrides) for `ttl_s`. One in-flight discovery per key."""

    def __init__(self, ttl_s: float = 3600.0, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: dict[tuple[str, str], tuple[float, OAuthServer]] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    @staticmethod
    def _key(mcp_url: str, overrides: OAuthOverrides | None) -> tuple[str, str]:
        return mcp_url, (overrides or OAuthOverrides()).model_dump_json()

    async def get(
        self, http: GuardedHttp, mcp_url: str, overrides: OAuthOverrides | None = None, **kw: Any
    ) -> OAuthServer:
        key = self._key(mcp_url, overrides)
        hit = self._entries.get(key)
        if hit is not None and hit[0] > self._clock():
            return hit[1]
        async with self._locks.setdefault(key, asyncio.Lock()):
            hit = self._entries.get(key)
            if hit is not None and hit[0] > self._clock():
                return hit[1]
            server = await discover(http, mcp_url, overrides, **kw)
            self._entries[key] = (self._clock() + self.ttl_s, server)
            return server

    def invalidate(self, mcp_url: str | None = None) -> None:
        """Forget one MCP URL (all overrides), or everything."""
        for key in [k for k in self._entries if mcp_url is None or k[0] == mcp_url]:
            del self._entries[key]
