"""Where Warden may open a connection: the one address policy every outbound request obeys
(connectors' OAuth fetches, the proxy's upstream calls).

- The host is resolved and *every* address checked; the connection then goes to a checked
  address (pinned), so a name that re-resolves to 127.0.0.1 between check and connect cannot
  slip through. TLS still verifies the certificate against the host name.
- Refused by default: loopback, private, link-local (169.254.169.254), shared, multicast,
  reserved, unspecified, and IPv6 forms embedding such an IPv4 (mapped, 6to4, Teredo, NAT64).
  Loopback only with `allow_loopback` (dev/test); other ranges only via `allowed_networks`.
- Plain http only for hosts listed in `allow_http_hosts`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpcore
import httpx

__all__ = [
    "AddressRefused",
    "IPAddress",
    "IPNetwork",
    "NetPolicy",
    "PinnedBackend",
    "PinnedTransport",
    "ResolveFailed",
    "Resolver",
    "check_address",
    "connect_first",
    "literal_ip",
    "resolve_checked",
    "system_resolver",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]
T = TypeVar("T")

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


@dataclass(frozen=True)
class NetPolicy:
    """Which addresses and schemes are allowed. The defaults are the production ones."""

    allow_http_hosts: frozenset[str] = frozenset()
    allow_loopback: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()


class AddressRefused(Exception):
    """The host is, or resolves to, an address the policy refuses."""

    def __init__(self, message: str, *, host: str, reason: str) -> None:
        super().__init__(message)
        self.message = message
        self.host = host
        self.reason = reason


class ResolveFailed(OSError):
    """The host name does not resolve (or not in time)."""

    def __init__(self, host: str) -> None:
        super().__init__(f"cannot resolve {host}")
        self.host = host


def _embedded_v4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _why_refused(ip: IPAddress) -> str | None:
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_private:
        return "private"
    if ip.is_reserved:
        return "reserved"
    if not ip.is_global:
        return "not globally routable"
    return None


def check_address(ip: IPAddress, policy: NetPolicy, *, host: str | None = None) -> None:
    """Raise AddressRefused unless `ip` may be connected to under `policy`."""
    if any(ip in net for net in policy.allowed_networks if net.version == ip.version):
        return
    inner = _embedded_v4(ip)
    for candidate in (ip, inner) if inner is not None else (ip,):
        why = _why_refused(candidate)
        if why is None:
            continue
        if why == "loopback" and policy.allow_loopback:
            continue
        if any(candidate in net for net in policy.allowed_networks if net.version == candidate.version):
            continue
        name = f"{host} resolves to {ip}" if host and host != str(ip) else f"{ip}"
        raise AddressRefused(
            f"refused: {name}, a {why} address; Warden only connects to public addresses",
            host=host or str(ip),
            reason=why,
        )


def literal_ip(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    out: list[IPAddress] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if ip not in out:
            out.append(ip)
    return out


async def resolve_checked(
    host: str, port: int, policy: NetPolicy, *, resolver: Resolver = system_resolver, timeout_s: float = 10.0
) -> list[IPAddress]:
    """The addresses to connect to: resolved once, every one checked (round-robin DNS cannot
    smuggle one in). Raises ResolveFailed or AddressRefused."""
    literal = literal_ip(host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            async with asyncio.timeout(timeout_s):
                addresses = await resolver(host, port)
        except (OSError, UnicodeError, TimeoutError) as e:
            raise ResolveFailed(host) from e
        if not addresses:
            raise ResolveFailed(host)
    for ip in addresses:
        check_address(ip, policy, host=host)
    return addresses


async def connect_first(
    addresses: list[IPAddress],
    connect: Callable[[IPAddress], Awaitable[T]],
    retry_on: tuple[type[Exception], ...],
) -> T:
    """Connect to the first of the checked `addresses` that takes the connection (in order;
    `retry_on` moves on to the next); the last such error if none does. Both pinned backends
    (httpcore's here, httpcore2's in the proxy) connect this way."""
    last: Exception | None = None
    for ip in addresses:
        try:
            return await connect(ip)
        except retry_on as e:
            last = e
    assert last is not None
    raise last


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """Resolve, check every address, connect to a checked address. Never lets the OS re-resolve."""

    def __init__(self, policy: NetPolicy, resolver: Resolver = system_resolver, timeout_s: float = 10.0) -> None:
        self._policy = policy
        self._resolver = resolver
        self._timeout_s = timeout_s
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await resolve_checked(
            host, port, self._policy, resolver=self._resolver, timeout_s=timeout or self._timeout_s
        )
        return await connect_first(
            addresses,
            lambda ip: self._inner.connect_tcp(
                str(ip), port, timeout=timeout, local_address=local_address, socket_options=socket_options
            ),
            (httpcore.ConnectError, httpcore.ConnectTimeout),
        )

    async def connect_unix_socket(self, *a: Any, **kw: Any) -> httpcore.AsyncNetworkStream:
        raise AddressRefused("refused: unix sockets are not reachable through the guard", host="unix", reason="unix")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class PinnedTransport(httpx.AsyncHTTPTransport):
    """An httpx transport whose every connection goes through `PinnedBackend`."""

    def __init__(self, backend: httpcore.AsyncNetworkBackend, verify: Any = True, **pool: Any) -> None:
        super().__init__(verify=verify, trust_env=False)
        ssl_context = self._pool._ssl_context  # the context httpx built from `verify`
        # httpx exposes no network_backend knob: rebuild its pool with ours (same settings otherwise)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=pool.get("max_connections", 100),
            max_keepalive_connections=pool.get("max_keepalive_connections", 20),
            keepalive_expiry=pool.get("keepalive_expiry", 5.0),
            network_backend=backend,
        )
