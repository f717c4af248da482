"""The one door every OAuth-related request goes through (MCP URL, metadata, endpoints, CIMD, JWKS).

- Scheme: https, unless the host is in `UrlPolicy.allow_http_hosts`. No userinfo in URLs.
- Addresses (the policy and the pinning live in `warden_common.netguard`, shared with the proxy's
  upstream calls): the host is resolved, *every* address is checked, and the connection is made to an
  address that was checked (pinned): a custom httpcore network backend does resolve-then-connect,
  so a name that re-resolves to 127.0.0.1 between check and connect cannot slip through. TLS still
  verifies the certificate against the host name (SNI comes from the URL, not the address).
  Refused by default: loopback, private, link-local (169.254.169.254), shared, multicast, reserved,
  unspecified, and IPv6 forms embedding such an IPv4 (mapped, 6to4, Teredo, NAT64). Loopback is
  allowed only with `allow_loopback` (dev/test); other ranges only via `allowed_networks`.
- Redirects: followed for GET only, at most `max_redirects`, each hop checked again.
- Size and time: bodies are capped at `max_response_bytes`, each call at `timeout_s` overall.
- No proxies from the environment (`trust_env=False`): the guard decides where bytes go.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpcore
import httpx
from warden_common import netguard
from warden_common.netguard import (
    AddressRefused,
    IPAddress,
    NetPolicy,
    PinnedBackend,
    PinnedTransport,
    ResolveFailed,
    Resolver,
    literal_ip,
    system_resolver,
)

from .errors import (
    BadResponse,
    ForbiddenAddress,
    InsecureUrl,
    ProviderTimeout,
    ProviderUnavailable,
    ResponseTooLarge,
    TooManyRedirects,
    UrlRefused,
)

__all__ = [
    "FetchResult",
    "GuardedHttp",
    "IPAddress",
    "Resolver",
    "UrlPolicy",
    "check_address",
    "check_url",
    "refused_in",
    "system_resolver",
]

log = logging.getLogger("warden.connectors.oauth")

_REDIRECTS = {301, 302, 303, 307, 308}


@dataclass(frozen=True)
class UrlPolicy(NetPolicy):
    """What the guard lets through: the address policy (libs/common `netguard`) plus fetch
    limits. The defaults are the production ones."""

    max_redirects: int = 3
    max_response_bytes: int = 1_000_000
    timeout_s: float = 10.0

    @classmethod
    def development(cls, **kw: Any) -> UrlPolicy:
        """Loopback over plain http allowed: for tests and `warden run` on one machine only."""
        kw.setdefault("allow_loopback", True)
        kw.setdefault("allow_http_hosts", frozenset({"127.0.0.1", "localhost", "::1"}))
        return cls(**kw)


def _forbidden(e: AddressRefused) -> ForbiddenAddress:
    return ForbiddenAddress(e.message, details={"host": e.host, "reason": e.reason})


def check_address(ip: IPAddress, policy: UrlPolicy, *, host: str | None = None) -> None:
    """Raise ForbiddenAddress unless `ip` may be connected to under `policy`."""
    try:
        netguard.check_address(ip, policy, host=host)
    except AddressRefused as e:
        raise _forbidden(e) from None


def check_url(url: str | httpx.URL, policy: UrlPolicy) -> httpx.URL:
    """Static checks on a URL (no DNS): scheme, host, userinfo, literal addresses."""
    try:
        u = httpx.URL(str(url))
    except (httpx.InvalidURL, ValueError, TypeError) as e:
        raise UrlRefused("refused: not a valid URL", details={"url": str(url)[:200]}) from e
    host = u.host.lower()
    shown = str(u.copy_with(query=None, fragment=None))[:300]
    if not host:
        raise UrlRefused(f"refused: {shown} has no host", details={"url": shown})
    if u.userinfo:
        raise UrlRefused("refused: URLs with user:password@ are not allowed", details={"host": host})
    if u.scheme == "http":
        if host not in policy.allow_http_hosts:
            if policy.allow_http_hosts:
                hint = (
                    f"plain http is accepted only for {', '.join(sorted(policy.allow_http_hosts))} in a development run"
                )
            else:
                hint = "OAuth requests go over https only; plain http is for development runs on loopback"
            raise InsecureUrl(
                f"refused: {shown} is http://; use https:// ({hint})",
                details={"url": shown},
            )
    elif u.scheme != "https":
        raise InsecureUrl(f"refused: scheme {u.scheme!r} is not https", details={"url": shown})
    ip = literal_ip(host)
    if ip is not None:
        check_address(ip, policy, host=host)
    return u


class _PinnedBackend(PinnedBackend):
    """libs/common's pinned backend, its refusals as this package's errors."""

    async def connect_tcp(self, host: str, port: int, *a: Any, **kw: Any) -> httpcore.AsyncNetworkStream:
        try:
            return await super().connect_tcp(host, port, *a, **kw)
        except AddressRefused as e:
            raise _forbidden(e) from None
        except ResolveFailed as e:
            raise ProviderUnavailable(f"cannot resolve {host}", details={"host": host}) from e

    async def connect_unix_socket(self, *a: Any, **kw: Any) -> httpcore.AsyncNetworkStream:
        raise UrlRefused("refused: unix sockets are not reachable through the URL guard")


def refused_in(e: UrlRefused, context: str) -> UrlRefused:
    """The same refusal, saying where it happened: `refused <context>: <why>`."""
    why = e.message.removeprefix("refused: ")
    return type(e)(f"refused {context}: {why}", oauth_error=e.oauth_error, details={**e.details, "where": context})


def _PinnedTransport(policy: UrlPolicy, resolver: Resolver, verify: Any = True) -> PinnedTransport:  # noqa: N802
    return PinnedTransport(_PinnedBackend(policy, resolver, timeout_s=policy.timeout_s), verify=verify)


@dataclass(frozen=True)
class FetchResult:
    """A fully read, size-capped response."""

    status_code: int
    headers: httpx.Headers
    content: bytes
    url: str
    redirects: tuple[str, ...] = field(default=())

    def json(self) -> Any:
        if self.is_redirect:
            raise BadResponse(self.redirect_message(), details={"url": _shown(self.url), "status": self.status_code})
        try:
            return json.loads(self.content)
        except (ValueError, UnicodeDecodeError) as e:
            kind = self.headers.get("content-type", "").split(";")[0].strip() or "no content type"
            via = f" (after redirects: {' -> '.join(self.redirects)})" if self.redirects else ""
            raise BadResponse(
                f"{_shown(self.url)}{via} answered HTTP {self.status_code} with a body that is not JSON ({kind})",
                details={"url": _shown(self.url), "status": self.status_code},
            ) from e

    @property
    def is_redirect(self) -> bool:
        return self.status_code in _REDIRECTS

    def redirect_message(self) -> str:
        """What a redirect where an answer was due says: from where, to where, and what to do."""
        to = self.headers.get("location")
        target = f" to {_shown(self.url if not to else httpx.URL(self.url).join(to))}" if to else " without a Location"
        return (
            f"{_shown(self.url)} answered a redirect (HTTP {self.status_code}{target}) instead of an answer; "
            "Warden does not follow redirects for POST requests: configure the endpoint's final URL"
        )

    def json_object(self) -> dict[str, Any]:
        body = self.json()
        if not isinstance(body, dict):
            raise BadResponse(
                f"{_shown(self.url)} answered JSON that is not an object", details={"url": _shown(self.url)}
            )
        return body


def _shown(url: str | httpx.URL) -> str:
    """A URL fit for a message: no query (it may carry codes), no fragment."""
    try:
        return str(httpx.URL(str(url)).copy_with(query=None, fragment=None))[:300]
    except (httpx.InvalidURL, ValueError):
        return "<invalid url>"


class GuardedHttp:
    """An HTTP client that only reaches what `UrlPolicy` allows. Owns its httpx client.

    `resolver` replaces DNS (tests use it to simulate rebinding); `verify` is httpx's TLS
    verification setting (a CA bundle path or SSLContext for private CAs).
    """

    def __init__(
        self,
        policy: UrlPolicy | None = None,
        *,
        resolver: Resolver | None = None,
        verify: Any = True,
        user_agent: str = "Warden-Connectors/0.1",
    ) -> None:
        self.policy = policy or UrlPolicy()
        self._client = httpx.AsyncClient(
            transport=_PinnedTransport(self.policy, resolver or system_resolver, verify=verify),
            follow_redirects=False,
            trust_env=False,
            timeout=httpx.Timeout(self.policy.timeout_s),
            headers={"User-Agent": user_agent},
        )

    async def __aenter__(self) -> GuardedHttp:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
        json_body: Any = None,
        auth: tuple[str, str] | None = None,
        follow_redirects: bool | None = None,
    ) -> FetchResult:
        """One guarded request. Redirects are followed for GET (default) and re-checked each hop."""
        follow = (method.upper() == "GET") if follow_redirects is None else follow_redirects
        current = check_url(url, self.policy)
        hops: list[str] = []
        try:
            async with asyncio.timeout(self.policy.timeout_s):
                while True:
                    try:
                        result = await self._one(method, current, headers, data, json_body, auth, tuple(hops))
                    except ForbiddenAddress as e:  # at connect time (DNS): say which URL, and which redirect
                        via = f" (redirected from {_shown(url)})" if hops else ""
                        raise refused_in(e, f"{_shown(current)}{via}") from None
                    if not follow or result.status_code not in _REDIRECTS:
                        return result
                    location = result.headers.get("location")
                    if not location:
                        return result
                    if len(hops) >= self.policy.max_redirects:
                        raise TooManyRedirects(
                            f"refused: {_shown(url)} redirected more than {self.policy.max_redirects} times",
                            details={"url": _shown(url)},
                        )
                    try:
                        nxt = check_url(current.join(location), self.policy)
                    except UrlRefused as e:
                        raise refused_in(e, f"the redirect from {_shown(current)} to {_shown(location)}") from None
                    hops.append(_shown(nxt))
                    log.debug("oauth fetch redirected to %s", _shown(nxt))
                    current = nxt
        except TimeoutError as e:
            raise ProviderTimeout(
                f"{_shown(url)} did not answer within {self.policy.timeout_s:g}s",
                details={"url": _shown(url)},
            ) from e

    async def _one(
        self,
        method: str,
        url: httpx.URL,
        headers: Mapping[str, str] | None,
        data: Mapping[str, str] | None,
        json_body: Any,
        auth: tuple[str, str] | None,
        hops: tuple[str, ...],
    ) -> FetchResult:
        shown = _shown(url)
        cap = self.policy.max_response_bytes
        try:
            async with self._client.stream(
                method,
                url,
                headers=dict(headers or {}),
                data=dict(data) if data is not None else None,
                json=json_body,
                auth=httpx.BasicAuth(*auth) if auth else None,
            ) as resp:
                declared = resp.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > cap:
                    raise ResponseTooLarge(
                        f"{shown} answered {declared} bytes; the limit is {cap}", details={"url": shown}
                    )
                buf = bytearray()
                async for chunk in resp.aiter_bytes():
                    buf += chunk
                    if len(buf) > cap:
                        raise ResponseTooLarge(f"{shown} answered more than {cap} bytes", details={"url": shown})
                return FetchResult(resp.status_code, resp.headers, bytes(buf), str(url), hops)
        except httpx.TimeoutException as e:
            raise ProviderTimeout(f"{shown} did not answer in time", details={"url": shown}) from e
        except httpx.TransportError as e:
            raise ProviderUnavailable(
                f"cannot reach {shown}: {type(e).__name__}", details={"url": shown, "error": type(e).__name__}
            ) from e
