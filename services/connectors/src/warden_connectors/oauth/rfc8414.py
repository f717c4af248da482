"""Authorization server metadata: RFC 8414 (with path insertion) and OpenID Connect Discovery."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import IssuerMismatch, MetadataInvalid
from .urlguard import FetchResult

__all__ = ["AuthorizationServerMetadata", "metadata_urls", "parse_as_metadata"]


class AuthorizationServerMetadata(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    issuer: str = Field(min_length=1, max_length=2000)
    authorization_endpoint: str | None = None
    token_endpoint: str | None = None
    registration_endpoint: str | None = None
    revocation_endpoint: str | None = None
    introspection_endpoint: str | None = None
    jwks_uri: str | None = None
    userinfo_endpoint: str | None = None
    scopes_supported: tuple[str, ...] | None = None
    response_types_supported: tuple[str, ...] | None = None
    grant_types_supported: tuple[str, ...] | None = None
    code_challenge_methods_supported: tuple[str, ...] | None = None
    token_endpoint_auth_methods_supported: tuple[str, ...] | None = None
    id_token_signing_alg_values_supported: tuple[str, ...] | None = None
    authorization_response_iss_parameter_supported: bool = False
    client_id_metadata_document_supported: bool = False
    # set by us, not by the server: the document came from /.well-known/openid-configuration
    from_openid_configuration: bool = False

    @property
    def is_oidc(self) -> bool:
        return (
            self.from_openid_configuration
            or self.id_token_signing_alg_values_supported is not None
            or "openid" in (self.scopes_supported or ())
        )


def metadata_urls(issuer: str) -> list[tuple[str, bool]]:
    """(url, is_openid_configuration) to try for `issuer`, in the MCP spec's order."""
    scheme, rest = issuer.split("://", 1)
    host, _, path = rest.partition("/")
    origin = f"{scheme}://{host}"
    path = ("/" + path).rstrip("/") if path else ""
    if path:
        return [
            (f"{origin}/.well-known/oauth-authorization-server{path}", False),
            (f"{origin}/.well-known/openid-configuration{path}", True),
            (f"{origin}{path}/.well-known/openid-configuration", True),
        ]
    return [
        (f"{origin}/.well-known/oauth-authorization-server", False),
        (f"{origin}/.well-known/openid-configuration", True),
    ]


def parse_as_metadata(result: FetchResult, expected_issuer: str, *, openid: bool) -> AuthorizationServerMetadata:
    body = result.json_object()
    body.pop("from_openid_configuration", None)
    try:
        md = AuthorizationServerMetadata.model_validate({**body, "from_openid_configuration": openid})
    except ValidationError as e:
        raise MetadataInvalid(
            f"authorization server metadata at {result.url} is malformed ({e.error_count()} problems)",
            details={"url": result.url},
        ) from None
    if md.issuer.rstrip("/") != expected_issuer.rstrip("/"):
        # RFC 8414 §3.3 / OIDC Discovery §4.3: the issuer must be the one we asked about
        raise IssuerMismatch(
            f"metadata at {result.url} is for issuer {md.issuer[:200]!r}, not {expected_issuer[:200]!r}",
            details={"url": result.url, "issuer": md.issuer[:200], "expected": expected_issuer[:200]},
        )
    return md
