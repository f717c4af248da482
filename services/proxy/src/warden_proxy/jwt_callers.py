"""Callers with a bearer JWT from a configured issuer (an enterprise IdP), besides agent keys.

A token is accepted when its signature verifies against the issuer's JWKS (fetched from the
configured URL or the issuer's discovery document, cached, refreshed at most once a minute
when an unknown key id shows up) and its claims hold: `iss` is the issuer, `aud` contains the
audience (by default the MCP endpoint's own URL, RFC 8707/9068), `exp` not passed, `nbf`
reached, and the user claim (default `sub`) present. The caller acts as that user, with the
profile named by the profile claim (default `warden_profile`) or the configured default;
without either it is refused. Nothing of the token is logged or kept beyond the check.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from warden_common.contracts.registry import PROFILE_PATTERN
from warden_common.errors import Unauthorized, Unavailable

__all__ = ["JwtCallerConfig", "JwtCallers", "jwt_callers_from"]

_MAX_JWKS_BYTES = 256 * 1024
_PROFILE = re.compile(PROFILE_PATTERN)


@dataclass(frozen=True)
class JwtCallerConfig:
    issuer: str
    audience: str
    jwks_url: str | None = None
    profile_claim: str = "warden_profile"
    default_profile: str | None = None
    user_claim: str = "sub"
    algorithms: tuple[str, ...] = ("RS256", "PS256", "ES256", "EdDSA")
    leeway_s: int = 30
    allow_http: bool = False  # dev/test: an issuer on plain http (loopback)


class JwtCallers:
    def __init__(self, config: JwtCallerConfig, *, http: httpx.AsyncClient | None = None) -> None:
        self.config = config
        for url in (config.issuer, config.jwks_url):
            if url and urlsplit(url).scheme != "https" and not config.allow_http:
                raise ValueError(f"the JWT issuer's URLs must use https: {url}")
        self._http = http or httpx.AsyncClient(timeout=5, trust_env=False, follow_redirects=False)
        self._keys: KeySet | None = None
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            r = await self._http.get(url, headers={"Accept": "application/json"})
        except httpx.HTTPError as e:
            raise Unavailable(f"the JWT issuer is unreachable ({type(e).__name__}); try again later") from None
        if r.status_code != 200 or len(r.content) > _MAX_JWKS_BYTES:
            raise Unavailable(f"the JWT issuer answered HTTP {r.status_code} for its keys; try again later")
        try:
            doc = r.json()
        except ValueError:
            raise Unavailable("the JWT issuer's key document is not JSON") from None
        if not isinstance(doc, dict):
            raise Unavailable("the JWT issuer's key document is not a JSON object")
        return doc

    async def _keyset(self, *, refresh: bool = False) -> KeySet:
        async with self._lock:
            fresh_enough = time.monotonic() - self._fetched_at < 60
            if self._keys is not None and (not refresh or fresh_enough):
                return self._keys
            url = self.config.jwks_url
            if url is None:
                base = self.config.issuer.rstrip("/")
                conf = await self._get_json(f"{base}/.well-known/openid-configuration")
                url = conf.get("jwks_uri")
                if not isinstance(url, str) or (urlsplit(url).scheme != "https" and not self.config.allow_http):
                    raise Unavailable("the JWT issuer's discovery document has no usable jwks_uri")
            try:
                self._keys = KeySet.import_key_set(await self._get_json(url))  # type: ignore[arg-type]
            except (JoseError, ValueError, TypeError, KeyError):
                raise Unavailable("the JWT issuer's key set cannot be read") from None
            self._fetched_at = time.monotonic()
            return self._keys

    async def _decode(self, token: str) -> dict[str, Any]:
        algs = list(self.config.algorithms)
        try:
            return dict(jwt.decode(token, await self._keyset(), algorithms=algs).claims)
        except (JoseError, ValueError):
            pass  # maybe a key the issuer rotated in: look again (at most once a minute)
        try:
            return dict(jwt.decode(token, await self._keyset(refresh=True), algorithms=algs).claims)
        except (JoseError, ValueError):
            raise Unauthorized("the bearer token is not a valid JWT from the configured issuer") from None

    async def verify(self, token: str) -> dict[str, Any]:
        """The claims of a token whose signature, issuer, expiry and audience hold; Unauthorized
        otherwise. What the claims grant (a profile, the admin scope) is the caller's to check."""
        if token.count(".") != 2 or len(token) > 16384:
            raise Unauthorized("send Authorization: Bearer <agent API key or JWT from the configured issuer>")
        claims = await self._decode(token)
        c = self.config
        registry = jwt.JWTClaimsRegistry(
            leeway=c.leeway_s,
            iss={"essential": True, "value": c.issuer},
            exp={"essential": True},
        )
        try:
            registry.validate(claims)
        except JoseError as e:
            raise Unauthorized(f"the bearer token was refused: {e.description or e.error}") from None
        aud = claims.get("aud")
        auds = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if c.audience not in auds:
            raise Unauthorized(f"the bearer token is not meant for this gateway (aud must include {c.audience})")
        return claims

    def user_of(self, claims: dict[str, Any]) -> str:
        user = claims.get(self.config.user_claim)
        if not isinstance(user, str) or not user or len(user) > 200:
            raise Unauthorized(f"the bearer token has no usable {self.config.user_claim!r} claim")
        return user

    async def authenticate(self, token: str) -> tuple[str, str]:
        """(user, profile) of a valid token; Unauthorized with a reason a person can act on."""
        claims = await self.verify(token)
        c = self.config
        user = self.user_of(claims)
        profile = claims.get(c.profile_claim, c.default_profile)
        if not isinstance(profile, str) or not _PROFILE.fullmatch(profile):
            raise Unauthorized(
                f"the bearer token names no profile (claim {c.profile_claim!r}) and no default profile is configured"
            )
        return user, profile


def jwt_callers_from(settings: Any, resource_url: str) -> JwtCallers | None:
    """The verifier the proxy's settings ask for, or None when JWT callers are not enabled."""
    if not settings.jwt_issuer:
        return None
    return JwtCallers(
        JwtCallerConfig(
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience or resource_url,
            jwks_url=settings.jwt_jwks_url,
            profile_claim=settings.jwt_profile_claim,
            default_profile=settings.jwt_default_profile,
            user_claim=settings.jwt_user_claim,
            allow_http=settings.allow_insecure_upstreams,
        )
    )
