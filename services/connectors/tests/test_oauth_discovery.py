"""Discovery against a real OAuth-protected MCP server and a real authorization server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from support.oidc import OidcProvider, oidc_provider
from support.protected_mcp import protected_mcp
from warden_connectors.oauth import (
    BearerChallenge,
    DiscoveryCache,
    DiscoveryFailed,
    GuardedHttp,
    IssuerMismatch,
    OAuthOverrides,
    ProviderUnavailable,
    ResourceMismatch,
    UrlPolicy,
    discover,
)


@pytest.fixture(scope="module")
async def op() -> AsyncIterator[OidcProvider]:
    async with oidc_provider() as op:
        yield op


@pytest.fixture(scope="module")
async def http() -> AsyncIterator[GuardedHttp]:
    async with GuardedHttp(UrlPolicy.development()) as http:
        yield http


def _assert_points_at(server, op: OidcProvider, mcp_url: str) -> None:
    assert server.issuer == op.issuer
    assert server.authorization_endpoint == f"{op.issuer}/auth"
    assert server.token_endpoint == f"{op.issuer}/token"
    assert server.registration_endpoint == f"{op.issuer}/reg"
    assert server.revocation_endpoint == f"{op.issuer}/token/revocation"
    assert server.resource == mcp_url
    assert server.scopes == ("mcp:tools",)
    assert server.iss_parameter_supported and server.is_oidc


async def test_discovery_follows_the_resource_metadata_hint_of_a_401(op: OidcProvider, http: GuardedHttp) -> None:
    # metadata only at the root, so the path-aware guess would miss: the hint must be used
    async with protected_mcp(op.issuer, prm_at="root") as mcp:
        server = await discover(http, mcp.url)
    _assert_points_at(server, op, mcp.url)
    assert server.prm is not None and server.prm.resource == mcp.url


async def test_discovery_uses_the_path_aware_well_known_uri_without_a_hint(op: OidcProvider, http: GuardedHttp) -> None:
    async with protected_mcp(op.issuer, hint=False) as mcp:
        server = await discover(http, mcp.url)
        _assert_points_at(server, op, mcp.url)
        assert await discover(http, mcp.url, probe=False) == server


async def test_discovery_falls_back_to_the_root_well_known_uri(op: OidcProvider, http: GuardedHttp) -> None:
    async with protected_mcp(op.issuer, hint=False, prm_at="root") as mcp:
        server = await discover(http, mcp.url)
    _assert_points_at(server, op, mcp.url)


async def test_overrides_replace_discovered_values(op: OidcProvider, http: GuardedHttp) -> None:
    async with protected_mcp(op.issuer) as mcp:
        ov = OAuthOverrides(
            token_endpoint=f"{op.issuer}/token?x=1",
            revocation_endpoint=f"{op.issuer}/revoke-here",
            scopes=("mcp:admin",),
            audience="api://warden",
            omit_resource=True,
        )
        server = await discover(http, mcp.url, ov)
        assert server.token_endpoint == f"{op.issuer}/token?x=1"
        assert server.revocation_endpoint == f"{op.issuer}/revoke-here"
        assert server.authorization_endpoint == f"{op.issuer}/auth"  # not overridden: discovered
        assert server.scopes == ("mcp:admin",)
        assert server.resource is None and server.audience == "api://warden"
        explicit = await discover(http, mcp.url, OAuthOverrides(resource="https://api.example.com/"))
        assert explicit.resource == "https://api.example.com/"


async def test_a_401_scope_hint_is_used_before_the_metadata_scopes(op: OidcProvider, http: GuardedHttp) -> None:
    async with protected_mcp(op.issuer) as mcp:
        hint = BearerChallenge(resource_metadata=mcp.prm_url, scope=("mcp:tools", "mcp:admin"))
        server = await discover(http, mcp.url, challenge=hint)
        assert server.scopes == ("mcp:tools", "mcp:admin")


async def test_metadata_for_another_resource_is_refused(op: OidcProvider, http: GuardedHttp) -> None:
    async with protected_mcp(op.issuer) as mcp:
        other = mcp.url.replace("/mcp", "/other")
        with pytest.raises(ResourceMismatch):
            await discover(http, other, challenge=BearerChallenge(resource_metadata=mcp.prm_url))


async def test_an_issuer_that_does_not_match_its_metadata_is_refused(op: OidcProvider, http: GuardedHttp) -> None:
    async with protected_mcp(op.issuer) as mcp:
        # the same server under another name: its metadata says issuer = http://127.0.0.1:..., so a
        # document fetched for "http://localhost:..." is not that issuer's (RFC 8414 §3.3)
        alias = op.issuer.replace("127.0.0.1", "localhost")
        with pytest.raises(IssuerMismatch):
            await discover(http, mcp.url, OAuthOverrides(issuer=alias))


async def test_a_server_without_metadata_needs_explicit_settings(op: OidcProvider, http: GuardedHttp) -> None:
    async with protected_mcp(op.issuer) as mcp:
        bare = mcp.url.replace("/mcp", "/nothing-here")
        with pytest.raises(DiscoveryFailed) as ei:
            await discover(http, bare, probe=False)
        assert "issuer" in ei.value.message
        server = await discover(http, bare, OAuthOverrides(issuer=op.issuer), probe=False)
        assert server.token_endpoint == f"{op.issuer}/token" and server.prm is None


async def test_authorization_server_down_during_discovery_is_retryable(http: GuardedHttp) -> None:
    async with oidc_provider() as gone:
        issuer = gone.issuer
    async with protected_mcp(issuer) as mcp:
        with pytest.raises(ProviderUnavailable) as ei:
            await discover(http, mcp.url)
    assert ei.value.retryable


async def test_discovery_cache_serves_until_its_ttl(op: OidcProvider, http: GuardedHttp) -> None:
    now = [1000.0]
    cache = DiscoveryCache(ttl_s=60, clock=lambda: now[0])
    async with protected_mcp(op.issuer) as mcp:
        first = await cache.get(http, mcp.url)
        other = await cache.get(http, mcp.url, OAuthOverrides(scopes=("x",)))  # other overrides, other entry
        assert other is not first and other.scopes == ("x",)
        url = mcp.url
    # the MCP server is gone: a cached answer needs no network
    assert await cache.get(http, url) is first
    now[0] += 61
    with pytest.raises(ProviderUnavailable):
        await cache.get(http, url)
