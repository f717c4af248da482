"""Where the MCP endpoint's RFC 9728 metadata lives (pure logic): §3.1 inserts the well-known
path after the host, then the resource's path."""

from __future__ import annotations

import pytest
from warden_proxy.rfc9728 import metadata_path, metadata_url, protected_resource_metadata


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        ("https://gw.acme.com/mcp", "https://gw.acme.com/.well-known/oauth-protected-resource/mcp"),
        # a host named mcp.*: the old text replacement made this https:/.acme.com/...
        ("https://mcp.acme.com/mcp", "https://mcp.acme.com/.well-known/oauth-protected-resource/mcp"),
        ("https://acme.com/gw/warden/mcp", "https://acme.com/.well-known/oauth-protected-resource/gw/warden/mcp"),
        ("https://acme.com:8443/mcp/", "https://acme.com:8443/.well-known/oauth-protected-resource/mcp"),
        ("http://127.0.0.1:8083/mcp", "http://127.0.0.1:8083/.well-known/oauth-protected-resource/mcp"),
        ("https://acme.com", "https://acme.com/.well-known/oauth-protected-resource"),
    ],
)
def test_the_metadata_url_inserts_the_well_known_path_after_the_host(resource: str, expected: str) -> None:
    assert metadata_url(resource) == expected
    assert expected.endswith(metadata_path(resource))


def test_a_relative_resource_url_is_refused() -> None:
    with pytest.raises(ValueError, match="absolute"):
        metadata_url("/mcp")


def test_agent_keys_only_lists_no_empty_authorization_servers() -> None:
    meta = protected_resource_metadata("https://gw.acme.com/mcp")
    assert "authorization_servers" not in meta
    assert "agent API key" in meta["resource_documentation"]
    with_issuer = protected_resource_metadata("https://gw.acme.com/mcp", "https://idp.acme.com")
    assert with_issuer["authorization_servers"] == ["https://idp.acme.com"]
