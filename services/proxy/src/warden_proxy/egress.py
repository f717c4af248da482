"""The one egress seam: every connection the proxy opens to an upstream MCP server goes through
an `Egress`, whatever the transport (the lean HTTP/1.1 pool, httpx, the SDK's httpx2 client
for legacy SSE).

An `Egress` holds the address policy (libs/common netguard), whether plain http is allowed,
and the resolver. Every connection resolves the host once, checks every address and connects
to a checked one (pinned): a name that re-resolves to 127.0.0.1 or 169.254.169.254 between
the pre-connect check and the connection is refused. No client behind it reads proxy
environment variables (`HTTP(S)_PROXY`, `ALL_PROXY`): the policy decides where bytes go, and
an environment proxy would move that decision out of Warden.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpcore2
import httpx
import httpx2
from warden_common.contracts.credentials import header_refusal
from warden_common.errors import BadInput
from warden_common.netguard import (
    AddressRefused,
    NetPolicy,
    PinnedBackend,
    PinnedTransport,
    ResolveFailed,
    Resolver,
    connect_first,
    resolve_checked,
    system_resolver,
)

from warden_proxy.errors import UpstreamError
from warden_proxy.h1 import H1Pool

__all__ = ["DEV_GUARD", "GUARD", "Egress"]

# production address policy for upstream connections: public addresses only, https only
GUARD = NetPolicy()
# the dev setting (`allow_insecure_upstreams`, the embedded run): http, and loopback too;
# private, link-local (cloud metadata), multicast and reserved addresses stay refused
DEV_GUARD = NetPolicy(allow_loopback=True)


class _PinnedBackend2(httpcore2.AsyncNetworkBackend):
    """`PinnedBackend` for httpcore2 (the transport under the SDK's httpx2 client)."""

    def __init__(self, egress: Egress, timeout_s: float) -> None:
        self._egress = egress
        self._timeout_s = timeout_s
        self._inner = httpcore2.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        addresses = await self._egress.resolve(host, port, timeout_s=timeout or self._timeout_s)
        return await connect_first(
            addresses,
            lambda ip: self._inner.connect_tcp(
                str(ip), port, timeout=timeout, local_address=local_address, socket_options=socket_options
            ),
            (httpcore2.ConnectError, httpcore2.ConnectTimeout),
        )

    async def connect_unix_socket(self, *a: Any, **kw: Any) -> httpcore2.AsyncNetworkStream:
        raise AddressRefused("refused: unix sockets are not reachable through the guard", host="unix", reason="unix")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _PinnedTransport2(httpx2.AsyncHTTPTransport):
    def __init__(self, backend: _PinnedBackend2) -> None:
        super().__init__(trust_env=False)
        ssl_context = self._pool._ssl_context  # the context httpx2 built (system trust)
        self._pool = httpcore2.AsyncConnectionPool(ssl_context=ssl_context, network_backend=backend)


@dataclass(frozen=True)
class Egress:
    """Where upstream connections may go, and how they are made."""

    policy: NetPolicy
    allow_http: bool = False
    resolver: Resolver = field(default=system_resolver)

    @classmethod
    def for_setting(cls, allow_insecure: bool, resolver: Resolver = system_resolver) -> Egress:
        """Production (public https only), or the dev setting (http and loopback too)."""
        return cls(DEV_GUARD if allow_insecure else GUARD, allow_http=allow_insecure, resolver=resolver)

    async def resolve(self, host: str, port: int, *, timeout_s: float = 10.0) -> list[Any]:
        """The checked addresses to connect to (ResolveFailed, AddressRefused)."""
        return await resolve_checked(host, port, self.policy, resolver=self.resolver, timeout_s=timeout_s)

    async def check_url(self, url: str) -> None:
        """Fail fast, with a reason, on URLs this egress would refuse (the connections
        themselves check again, and connect only to what they checked)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BadInput("upstream URL must be absolute http(s)")
        if parts.scheme != "https" and not self.allow_http:
            raise BadInput("upstream URL must use https")
        try:
            await self.resolve(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80), timeout_s=5)
        except ResolveFailed:
            raise UpstreamError(f"cannot resolve upstream host {parts.hostname}") from None
        except AddressRefused as e:
            raise BadInput(f"upstream host {parts.hostname}: {e.message}") from None

    @staticmethod
    def check_headers(connector: str, headers: dict[str, str]) -> None:
        """Refuse a credential that sets a hop-by-hop or transport header (the list connectors
        validates against): never forwarded, never silently dropped."""
        for name in headers:
            if why := header_refusal(name):
                raise UpstreamError(f"connector {connector}: {why}; an admin must change the connector's headers")

    def httpx_transport(self, timeout_s: float) -> httpx.AsyncBaseTransport:
        """For httpx clients (the lean session's GET stream and non-hot requests)."""
        return PinnedTransport(PinnedBackend(self.policy, self.resolver, timeout_s=timeout_s))

    def h1_pool(self, url: str, *, connect_timeout_s: float) -> H1Pool:
        """The lean HTTP/1.1 pool (the hot path)."""
        return H1Pool(url, connect_timeout_s=connect_timeout_s, policy=self.policy, resolver=self.resolver)

    def sdk_client_factory(self, connect_timeout_s: float) -> Any:
        """An `McpHttpClientFactory` for the SDK's transports (legacy SSE): an httpx2 client
        that is pinned, ignores proxy environment variables, and follows no redirect itself."""

        def factory(
            headers: dict[str, str] | None = None,
            timeout: httpx2.Timeout | None = None,
            auth: httpx2.Auth | None = None,
        ) -> httpx2.AsyncClient:
            return httpx2.AsyncClient(
                headers=headers,
                timeout=timeout or httpx2.Timeout(connect_timeout_s, read=300.0),
                auth=auth,
                follow_redirects=False,
                trust_env=False,
                transport=_PinnedTransport2(_PinnedBackend2(self, connect_timeout_s)),
            )

        return factory
