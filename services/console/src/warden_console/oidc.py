"""Single sign-on with the OIDC issuer the proxy trusts (`WARDEN_PROXY_JWT_ISSUER`).

    GET /login/oidc  ->  discovery (the issuer's `/.well-known/openid-configuration`, whose
        `issuer` must be the configured one), the console's client (configured, or registered
        once by RFC 7591 dynamic registration), a pending flow: `state`, `nonce` and a PKCE
        verifier, single use, 10 minutes, bound to this browser by a cookie of its own
    ->  the issuer's login and consent, asked for `scope` and `resource` = the proxy's JWT
        audience (RFC 8707), so the access token is one the proxy accepts
    ->  GET /login/oidc/callback: the state (known, unused, this browser's), `iss` (RFC 9207:
        the configured issuer, never another's answer), the code exchanged with the verifier;
        the ID token (signature by the issuer's JWKS, `iss`, `aud` = the client, `exp`,
        `nonce`) and the access token (a JWT: signature, `iss`, `aud` = the proxy's audience,
        `exp`; the same person as the ID token) are verified
    ->  an admin when the access token's scope holds the admin scope (or the configured claim
        says so), else an end user; the person is the user claim (`sub`), as the proxy's JWT
        path knows them.

Every failure is a `WardenError` (BadInput, Forbidden, Unauthorized; Unavailable when the
issuer cannot be used) with a sentence a person can act on, never a token. The
keys are cached and fetched again (at most once a minute) when a token names one not seen.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote, urlencode, urlsplit

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from pydantic import SecretStr
from warden_common.errors import BadInput, Forbidden, Unauthorized, Unavailable

from warden_console.settings import OidcSettings

__all__ = ["FLOW_TTL_S", "Identity", "Oidc", "UnknownFlow"]

FLOW_TTL_S = 600
_MAX_FLOWS = 10_000
_MAX_DOC = 256 * 1024
_ALGS = ["RS256", "PS256", "ES256", "EdDSA"]
_LEEWAY_S = 30


class UnknownFlow(BadInput):
    """An answer whose state names no pending sign-in (tampered, used or expired). The browser's
    own flow, if one is pending, is left alone: this answer may not be its."""


@dataclass(frozen=True)
class Identity:
    """Who signed in: the person (the user claim), their role, and their access token with
    its expiry (epoch seconds)."""

    user: str
    role: Literal["admin", "user"]
    access_token: SecretStr = field(repr=False)
    expires_at: float


@dataclass(frozen=True)
class _Provider:
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    registration_endpoint: str | None
    iss_parameter: bool  # RFC 9207: the issuer says it puts `iss` on every authorization response


@dataclass(frozen=True)
class _Client:
    client_id: str
    client_secret: SecretStr | None = field(default=None, repr=False)
    auth_method: str = "client_secret_basic"


@dataclass(frozen=True)
class _Flow:
    binding: str  # SHA-256 of the browser's flow cookie
    verifier: str = field(repr=False)
    nonce: str = field(repr=False)
    expires_at: float


def _sha256(v: str) -> str:
    return hashlib.sha256(v.encode()).hexdigest()


def _challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def _scopes(claims: dict[str, Any]) -> set[str]:
    """OAuth `scope` is a space-separated string (RFC 9068); some issuers send `scp`, a list."""
    out: set[str] = set()
    for name in ("scope", "scp"):
        v = claims.get(name)
        if isinstance(v, str):
            out.update(v.split())
        elif isinstance(v, list):
            out.update(s for s in v if isinstance(s, str))
    return out


def _claim_holds(claims: dict[str, Any], name: str, value: str) -> bool:
    v = claims.get(name)
    return v == value or (isinstance(v, list) and value in v)


class Oidc:
    def __init__(self, settings: OidcSettings, *, redirect_uri: str, audience: str) -> None:
        if not settings.issuer:
            raise ValueError("no OIDC issuer configured")
        self.settings = settings
        self.issuer = settings.issuer
        self.redirect_uri = settings.redirect_url or redirect_uri
        self.audience = settings.audience or audience
        self.name = settings.name or urlsplit(self.issuer).netloc
        self._http = httpx.AsyncClient(timeout=settings.timeout_s, trust_env=False, follow_redirects=False)
        self._provider: _Provider | None = None
        self._client: _Client | None = None
        if settings.client_id:
            secret = settings.client_secret
            self._client = _Client(settings.client_id, secret, "client_secret_basic" if secret else "none")
        self._keys: KeySet | None = None
        self._keys_at = 0.0
        self._lock = asyncio.Lock()
        self._flows: OrderedDict[str, _Flow] = OrderedDict()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- the issuer ------------------------------------------------------------------------
    def _usable(self, url: object, what: str) -> str:
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
            raise Unavailable(f"the sign-in issuer's discovery document has no usable {what}")
        if urlsplit(url).scheme != "https" and not self.settings.allow_insecure_http:
            raise Unavailable(f"the sign-in issuer's {what} is not https")
        return url

    async def _json(self, method: str, url: str, what: str, **kw: Any) -> tuple[int, dict[str, Any]]:
        try:
            r = await self._http.request(method, url, headers={"Accept": "application/json"}, **kw)
        except httpx.HTTPError as e:
            raise Unavailable(f"the sign-in issuer is not reachable ({type(e).__name__}) for its {what}") from None
        if len(r.content) > _MAX_DOC:
            raise Unavailable(f"the sign-in issuer's {what} is over {_MAX_DOC} bytes")
        try:
            doc = r.json()
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            raise Unavailable(f"the sign-in issuer answered HTTP {r.status_code} without JSON for its {what}")
        return r.status_code, doc

    async def _discover(self) -> _Provider:
        if self._provider is not None:
            return self._provider
        url = f"{self.issuer.rstrip('/')}/.well-known/openid-configuration"
        status, doc = await self._json("GET", url, "discovery document")
        if status != 200:
            raise Unavailable(f"the sign-in issuer answered HTTP {status} for its discovery document")
        if doc.get("issuer") != self.issuer:
            raise Unavailable("the issuer's discovery document names another issuer: check OIDC__ISSUER")
        reg = doc.get("registration_endpoint")
        self._provider = _Provider(
            authorization_endpoint=self._usable(doc.get("authorization_endpoint"), "authorization_endpoint"),
            token_endpoint=self._usable(doc.get("token_endpoint"), "token_endpoint"),
            jwks_uri=self._usable(doc.get("jwks_uri"), "jwks_uri"),
            registration_endpoint=self._usable(reg, "registration_endpoint") if reg else None,
            iss_parameter=doc.get("authorization_response_iss_parameter_supported") is True,
        )
        return self._provider

    async def _registered(self, provider: _Provider) -> _Client:
        async with self._lock:
            if self._client is not None:
                return self._client
            if provider.registration_endpoint is None:
                raise Unavailable(
                    "the issuer offers no dynamic client registration: register the console there "
                    f"(redirect URI {self.redirect_uri}) and set OIDC__CLIENT_ID and OIDC__CLIENT_SECRET"
                )
            body = {
                "client_name": "Warden console",
                "application_type": "web",
                "redirect_uris": [self.redirect_uri],
                "grant_types": ["authorization_code"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "client_secret_basic",
            }
            status, doc = await self._json("POST", provider.registration_endpoint, "client registration", json=body)
            client_id, secret = doc.get("client_id"), doc.get("client_secret")
            if status not in (200, 201) or not isinstance(client_id, str):
                raise Unavailable(
                    f"the issuer refused to register the console (HTTP {status}: {str(doc.get('error', ''))[:100]})"
                )
            method = doc.get("token_endpoint_auth_method") or "client_secret_basic"
            self._client = _Client(client_id, SecretStr(secret) if isinstance(secret, str) else None, str(method))
            return self._client

    async def _keyset(self, provider: _Provider, *, refresh: bool = False) -> KeySet:
        async with self._lock:
            if self._keys is not None and (not refresh or time.monotonic() - self._keys_at < 60):
                return self._keys
            status, doc = await self._json("GET", provider.jwks_uri, "keys")
            if status != 200:
                raise Unavailable(f"the sign-in issuer answered HTTP {status} for its keys")
            try:
                self._keys = KeySet.import_key_set(doc)  # type: ignore[arg-type]
            except (JoseError, ValueError, TypeError, KeyError):
                raise Unavailable("the sign-in issuer's key set cannot be read") from None
            self._keys_at = time.monotonic()
            return self._keys

    async def _verified(self, provider: _Provider, token: str, what: str, audience: str) -> dict[str, Any]:
        """A JWT's claims once its signature (the issuer's keys), `iss`, `aud` and `exp` hold."""
        if token.count(".") != 2 or len(token) > 16384:
            raise Unauthorized(f"the issuer's {what} is not a JWT")
        claims: dict[str, Any] | None = None
        for refresh in (False, True):  # a key the issuer rotated in: look again (at most once a minute)
            try:
                claims = dict(jwt.decode(token, await self._keyset(provider, refresh=refresh), algorithms=_ALGS).claims)
                break
            except (JoseError, ValueError):
                continue
        if claims is None:
            raise Unauthorized(f"the {what}'s signature does not verify with the issuer's keys")
        registry = jwt.JWTClaimsRegistry(
            leeway=_LEEWAY_S, iss={"essential": True, "value": self.issuer}, exp={"essential": True}
        )
        try:
            registry.validate(claims)
        except JoseError as e:
            raise Unauthorized(f"the {what} was refused: {e.description or e.error}") from None
        aud = claims.get("aud")
        auds = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if audience not in auds:
            raise Unauthorized(f"the {what} is not meant for {'this console' if what == 'ID token' else audience}")
        return claims

    # -- the flow ------------------------------------------------------------------------
    async def begin(self, login_hint: str | None = None) -> tuple[str, str]:
        """(the issuer's authorization URL, the value of this browser's flow cookie)."""
        provider = await self._discover()
        client = await self._registered(provider)
        now = time.time()
        for k in [k for k, f in self._flows.items() if f.expires_at <= now]:
            del self._flows[k]
        while len(self._flows) >= _MAX_FLOWS:
            self._flows.popitem(last=False)
        state, binding = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        flow = _Flow(_sha256(binding), secrets.token_urlsafe(48), secrets.token_urlsafe(24), now + FLOW_TTL_S)
        self._flows[_sha256(state)] = flow
        query = {
            "response_type": "code",
            "client_id": client.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": self.settings.scope,
            "state": state,
            "nonce": flow.nonce,
            "code_challenge": _challenge(flow.verifier),
            "code_challenge_method": "S256",
            "resource": self.audience,
        }
        if login_hint:
            query["login_hint"] = login_hint[:200]
        sep = "&" if "?" in provider.authorization_endpoint else "?"
        return f"{provider.authorization_endpoint}{sep}{urlencode(query)}", binding

    async def finish(self, params: dict[str, str], binding: str | None) -> Identity:
        """The person behind the issuer's answer at the callback; a WardenError otherwise."""
        state = params.get("state") or ""
        flow = self._flows.pop(_sha256(state), None) if 0 < len(state) <= 200 else None
        if flow is None or flow.expires_at <= time.time():
            raise UnknownFlow("this sign-in is unknown, used or expired: sign in again")
        if not binding or not hmac.compare_digest(flow.binding, _sha256(binding)):
            raise Forbidden("this sign-in was started in another browser: sign in again from this one")
        provider = await self._discover()
        iss = params.get("iss")
        if iss is not None and iss != self.issuer:
            raise Forbidden("the answer came from another issuer than the one this console trusts: sign in again")
        if iss is None and provider.iss_parameter:
            raise Forbidden("the issuer's answer lacks its `iss` (RFC 9207): sign in again")
        if err := params.get("error"):
            desc = params.get("error_description", "")[:300]
            raise Unauthorized(f"the issuer did not sign you in ({err[:60]}{': ' + desc if desc else ''})")
        code = params.get("code")
        if not code or len(code) > 4096:
            raise BadInput("the issuer's answer has no authorization code: sign in again")
        client = await self._registered(provider)
        tokens = await self._exchange(provider, client, code, flow.verifier)
        id_token, access = tokens.get("id_token"), tokens.get("access_token")
        if not isinstance(id_token, str):
            raise Unauthorized("the issuer sent no ID token (is `openid` in OIDC__SCOPE?)")
        if not isinstance(access, str) or access.count(".") != 2:
            raise Unauthorized(
                f"the issuer sent no JWT access token for {self.audience}: it must issue RFC 9068 access "
                "tokens for that resource (RFC 8707), the kind the proxy accepts"
            )
        idc = await self._verified(provider, id_token, "ID token", client.client_id)
        if isinstance(idc.get("aud"), list) and len(idc["aud"]) > 1 and idc.get("azp") != client.client_id:
            raise Unauthorized("the ID token was issued to another client (azp)")
        nonce = idc.get("nonce")
        if not isinstance(nonce, str) or not hmac.compare_digest(nonce.encode(), flow.nonce.encode()):
            raise Unauthorized("the ID token's nonce is not this sign-in's: sign in again")
        atc = await self._verified(provider, access, "access token", self.audience)
        if atc.get("sub") != idc.get("sub"):
            raise Unauthorized("the access token and the ID token are not the same person's")
        claim = self.settings.user_claim
        user = atc.get(claim, idc.get(claim))
        if not isinstance(user, str) or not user or len(user) > 200:
            raise Unauthorized(f"the tokens have no usable {claim!r} claim")
        admin = self.settings.admin_scope in _scopes(atc)
        if self.settings.admin_claim and not admin:
            name, _, value = self.settings.admin_claim.partition("=")
            admin = _claim_holds(atc, name, value) or _claim_holds(idc, name, value)
        return Identity(
            user=user,
            role="admin" if admin else "user",
            access_token=SecretStr(access),
            expires_at=float(atc["exp"]),
        )

    async def _exchange(self, provider: _Provider, client: _Client, code: str, verifier: str) -> dict[str, Any]:
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri,
            "code_verifier": verifier,
            "resource": self.audience,
        }
        kw: dict[str, Any] = {}
        secret = client.client_secret.get_secret_value() if client.client_secret else None
        if secret is not None and client.auth_method == "client_secret_basic":
            # RFC 6749 §2.3.1: both form-urlencoded before Basic
            kw["auth"] = httpx.BasicAuth(quote(client.client_id, safe=""), quote(secret, safe=""))
        else:
            data["client_id"] = client.client_id
            if secret is not None:
                data["client_secret"] = secret
        status, doc = await self._json("POST", provider.token_endpoint, "token endpoint", data=data, **kw)
        if status != 200:
            err = str(doc.get("error", ""))[:60]
            desc = str(doc.get("error_description", ""))[:200]
            raise Unauthorized(f"the issuer refused the code ({err}{': ' + desc if desc else ''}): sign in again")
        return doc
