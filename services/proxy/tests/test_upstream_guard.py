"""The proxy's upstream connections obey the shared address guard (libs/common netguard):
addresses are resolved once, every one checked, and the connection pinned to a checked one."""

from __future__ import annotations

import ipaddress

import pytest
from warden_common.netguard import AddressRefused, NetPolicy, PinnedBackend, resolve_checked
from warden_proxy.h1 import H1Pool
from warden_proxy.upstream import _translate, check_upstream_url


async def test_a_name_resolving_to_loopback_is_refused_before_any_connection() -> None:
    pool = H1Pool("https://localhost:9/mcp", connect_timeout_s=2, policy=NetPolicy())
    with pytest.raises(AddressRefused) as e:
        await pool._connect()
    assert e.value.reason == "loopback"
    assert "Warden only connects to public addresses" in _translate("notes", e.value).message


async def test_every_resolved_address_is_checked_so_round_robin_dns_cannot_smuggle_one_in() -> None:
    async def resolver(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        return [ipaddress.ip_address("93.184.216.34"), ipaddress.ip_address("169.254.169.254")]

    with pytest.raises(AddressRefused) as e:
        await resolve_checked("rebind.example", 443, NetPolicy(), resolver=resolver)
    assert e.value.reason == "link-local"
    with pytest.raises(AddressRefused):
        await PinnedBackend(NetPolicy(), resolver).connect_tcp("rebind.example", 443)


async def test_the_pre_connect_check_names_the_reason() -> None:
    with pytest.raises(Exception, match="private"):
        await check_upstream_url("https://10.1.2.3/mcp", allow_insecure=False)
    with pytest.raises(Exception, match="https"):
        await check_upstream_url("http://example.com/mcp", allow_insecure=False)
    await check_upstream_url("http://127.0.0.1:9/mcp", allow_insecure=True)  # the dev setting
