"""Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document, MCP 2025-11-25).

Warden serves this document itself at a URL the service configures; that URL *is* the
client_id. Authorization servers that advertise `client_id_metadata_document_supported` fetch
it instead of needing a registration. The client is public (`none`): no secret to keep.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .client import ClientRegistration

__all__ = ["ClientMetadataDocument", "cimd_registration", "validate_cimd_url"]


def validate_cimd_url(url: str) -> str:
    """The rules the draft sets for a client_id URL: https, a path, no fragment, no dot
    segments, no credentials."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError("a client ID metadata document URL must be https://host/...")
    if not parts.path or parts.path == "/":
        raise ValueError("a client ID metadata document URL must have a path")
    if parts.fragment or "#" in url:
        raise ValueError("a client ID metadata document URL must not have a fragment")
    if parts.username or parts.password:
        raise ValueError("a client ID metadata document URL must not carry credentials")
    if any(seg in (".", "..") for seg in parts.path.split("/")):
        raise ValueError("a client ID metadata document URL must not have dot segments")
    return url


class ClientMetadataDocument(BaseModel):
    """The JSON Warden serves at `client_id` (`model_dump(mode="json", exclude_none=True)`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    client_id: str
    client_name: str = "Warden"
    client_uri: str | None = None
    logo_uri: str | None = None
    redirect_uris: tuple[str, ...] = Field(min_length=1)
    grant_types: tuple[str, ...] = ("authorization_code", "refresh_token")
    response_types: tuple[str, ...] = ("code",)
    token_endpoint_auth_method: str = "none"

    @field_validator("client_id")
    @classmethod
    def _https_url(cls, v: str) -> str:
        return validate_cimd_url(v)


def cimd_registration(doc: ClientMetadataDocument, issuer: str) -> ClientRegistration:
    return ClientRegistration(
        issuer=issuer,
        client_id=doc.client_id,
        token_endpoint_auth_method="none",
        source="cimd",
        redirect_uri=doc.redirect_uris[0],
    )
