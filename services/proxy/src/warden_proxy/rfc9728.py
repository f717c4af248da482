"""RFC 9728 protected-resource metadata of the MCP endpoint, and where it is published.

§3.1: the metadata URL is the resource's origin, then `/.well-known/oauth-protected-resource`,
then the resource's path — `https://mcp.acme.com/gw/mcp` has its metadata at
`https://mcp.acme.com/.well-known/oauth-protected-resource/gw/mcp`. Built here once, for the
401's `WWW-Authenticate` and for the route that serves it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = ["WELL_KNOWN", "metadata_path", "metadata_url", "protected_resource_metadata"]

WELL_KNOWN = "/.well-known/oauth-protected-resource"


def metadata_path(resource_url: str) -> str:
    """The path part of the metadata URL (what the proxy's route serves)."""
    path = urlsplit(resource_url).path.rstrip("/")
    return WELL_KNOWN + path


def metadata_url(resource_url: str) -> str:
    parts = urlsplit(resource_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"the MCP resource URL {resource_url!r} must be an absolute http(s) URL")
    return urlunsplit((parts.scheme, parts.netloc, metadata_path(resource_url), "", ""))


def protected_resource_metadata(resource_url: str, jwt_issuer: str | None = None) -> dict[str, Any]:
    """Agents authenticate with Warden agent keys; with `jwt_issuer`, also with that issuer's
    access tokens. With agent keys only, `authorization_servers` is left out (RFC 9728: it is
    optional) rather than sent empty, and the documentation field says how to get in: there is
    no authorization server to run OAuth against."""
    meta: dict[str, Any] = {
        "resource": resource_url,
        "bearer_methods_supported": ["header"],
        "resource_name": "Warden MCP gateway",
    }
    if jwt_issuer:
        meta["authorization_servers"] = [jwt_issuer]
        meta["resource_documentation"] = (
            "Authenticate with an agent API key (Authorization: Bearer wk_...) "
            f"or an access token from {jwt_issuer} whose audience is {resource_url}"
        )
    else:
        meta["resource_documentation"] = (
            "No OAuth authorization server: authenticate with a Warden agent API key that an admin "
            "created for you (Authorization: Bearer wk_...)"
        )
    return meta
