"""OAuth 2.0 Protected Resource Metadata (RFC 9728), as the MCP authorization spec uses it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import MetadataInvalid, ResourceMismatch
from .urlguard import FetchResult

__all__ = ["ProtectedResourceMetadata", "check_resource", "parse_prm", "prm_urls"]


class ProtectedResourceMetadata(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    resource: str = Field(min_length=1, max_length=2000)
    authorization_servers: tuple[str, ...] = ()
    scopes_supported: tuple[str, ...] | None = None
    bearer_methods_supported: tuple[str, ...] | None = None
    resource_name: str | None = None


def _split(url: str) -> tuple[str, str]:
    """(origin, path without trailing slash) of an http(s) URL."""
    scheme, rest = url.split("://", 1)
    host, _, path = rest.partition("/")
    path = "/" + path.split("?", 1)[0].split("#", 1)[0]
    return f"{scheme}://{host}", path.rstrip("/")


def prm_urls(resource_url: str) -> list[str]:
    """Well-known URIs to try, in order: path-aware first (RFC 9728 §3.1), then the root."""
    origin, path = _split(resource_url)
    urls = []
    if path:
        urls.append(f"{origin}/.well-known/oauth-protected-resource{path}")
    urls.append(f"{origin}/.well-known/oauth-protected-resource")
    return urls


def parse_prm(result: FetchResult) -> ProtectedResourceMetadata:
    try:
        return ProtectedResourceMetadata.model_validate(result.json_object())
    except ValidationError as e:
        raise MetadataInvalid(
            f"protected resource metadata at {result.url} is malformed ({e.error_count()} problems)",
            details={"url": result.url},
        ) from None


def _norm(url: str) -> tuple[str, str]:
    origin, path = _split(url)
    return origin.lower(), path


def check_resource(prm: ProtectedResourceMetadata, mcp_url: str) -> None:
    """The metadata must describe this server: same origin, and its path a prefix of ours."""
    r_origin, r_path = _norm(prm.resource)
    m_origin, m_path = _norm(mcp_url)
    if r_origin != m_origin or not (m_path == r_path or m_path.startswith(r_path + "/") or r_path == ""):
        raise ResourceMismatch(
            f"protected resource metadata names resource {prm.resource[:200]!r}, not {mcp_url[:200]!r}; "
            "refusing to send tokens for another resource",
            details={"resource": prm.resource[:200], "mcp_url": mcp_url[:200]},
        )
