"""API models of the connectors service. Secrets are SecretStr in, never out."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from warden_common.contracts.credentials import NAME_PATTERN, Transport, header_refusal

__all__ = [
    "ApiKeyAuth",
    "AuthSpec",
    "BearerAuth",
    "ConnectorCreate",
    "ConnectorUpdate",
    "ConnectorView",
    "CustomHeadersAuth",
    "JwtPassthroughAuth",
    "NoAuth",
    "OAuth2Auth",
    "Scope",
    "Status",
]

Scope = Literal["organization", "per_user"]
Status = Literal["pending", "active", "reauth_required", "expired", "error", "disconnected"]
_HEADER = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")


def _check_header_name(name: str) -> str:
    """A header name an admin may configure: a token (RFC 9110 §5.6.2), not hop-by-hop, not one
    Warden's transport sets (warden_common.contracts.credentials.RESERVED_HEADERS)."""
    if not _HEADER.match(name):
        raise ValueError(f"{name!r} is not a valid header name (letters, digits and !#$%&'*+.^_`|~- only)")
    if why := header_refusal(name):
        raise ValueError(why)
    return name


def _check_headers(headers: dict[str, str], *, oauth: bool = False) -> None:
    seen: set[str] = set()
    for k, val in headers.items():
        _check_header_name(k)
        if k.lower() in seen:
            raise ValueError(f"header {k!r} is given twice (header names are case-insensitive)")
        seen.add(k.lower())
        if oauth and k.lower() == "authorization":
            raise ValueError(
                "'Authorization' carries the connector's OAuth access token; an extra header may not replace it"
            )
        _check_header_value(val)


def _check_header_value(value: str) -> None:
    if any(c in value for c in "\r\n\x00") or len(value) > 8192:
        raise ValueError("header values must be single-line and at most 8 KiB")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NoAuth(_Strict):
    type: Literal["none"] = "none"


class BearerAuth(_Strict):
    type: Literal["bearer"]
    token: SecretStr = Field(min_length=1)

    @field_validator("token")
    @classmethod
    def _v(cls, v: SecretStr) -> SecretStr:
        _check_header_value(v.get_secret_value())
        return v


class ApiKeyAuth(_Strict):
    type: Literal["api_key"]
    header: str = "X-API-Key"
    key: SecretStr = Field(min_length=1)

    _h = field_validator("header")(classmethod(lambda cls, v: _check_header_name(v)))

    @field_validator("key")
    @classmethod
    def _v(cls, v: SecretStr) -> SecretStr:
        _check_header_value(v.get_secret_value())
        return v


class CustomHeadersAuth(_Strict):
    type: Literal["custom_headers"]
    headers: dict[str, SecretStr] = Field(min_length=1, max_length=32)

    @field_validator("headers")
    @classmethod
    def _v(cls, v: dict[str, SecretStr]) -> dict[str, SecretStr]:
        # Authorization may be one of them (sent as given, e.g. "Token abc"): a static credential
        _check_headers({k: val.get_secret_value() for k, val in v.items()})
        return v


class JwtPassthroughAuth(_Strict):
    """The embedding website sends a JWE wrapping its RS256-signed JWT; Warden decrypts it
    with this connector's own private key (generated at creation; its public JWK is shown),
    verifies signature, `exp` and `aud`, and puts the JWT where `%{jwt_token}` appears."""

    type: Literal["jwt_passthrough"]
    headers: dict[str, str] = Field(
        default_factory=lambda: {"Authorization": "Bearer %{jwt_token}"}, min_length=1, max_length=16
    )
    site_public_jwk: dict[str, object] = Field(description="the site's RSA public key (JWK) that signs its JWTs")
    audience: str = Field(min_length=1, max_length=500)
    issuer: str | None = Field(default=None, max_length=500)

    @field_validator("headers")
    @classmethod
    def _v(cls, v: dict[str, str]) -> dict[str, str]:
        if not any("%{jwt_token}" in val for val in v.values()):
            raise ValueError("at least one header value must contain %{jwt_token}")
        _check_headers(v)
        return v

    @field_validator("site_public_jwk")
    @classmethod
    def _jwk(cls, v: dict[str, object]) -> dict[str, object]:
        if v.get("kty") != "RSA" or "n" not in v or "e" not in v or "d" in v:
            raise ValueError("site_public_jwk must be an RSA public key (kty RSA, n, e; no private part)")
        return v


class OAuth2Auth(_Strict):
    """OAuth 2.1: authorization code + PKCE (someone consents), or client credentials (Warden
    itself is the client's only user: machine-to-machine, organization scope only). Every
    discovered value may be overridden."""

    type: Literal["oauth2"]
    grant_type: Literal["authorization_code", "client_credentials"] = "authorization_code"
    client_id: str | None = Field(default=None, max_length=500)
    client_secret: SecretStr | None = None
    token_endpoint_auth_method: (
        Literal["client_secret_post", "client_secret_basic", "private_key_jwt", "none"] | None
    ) = None
    # private_key_jwt (RFC 7523): the client's private key, PEM, and its signing algorithm
    private_key: SecretStr | None = Field(default=None, description="PEM; private_key_jwt only")
    signing_alg: Literal["ES256", "ES384", "RS256", "PS256", "EdDSA"] | None = None
    use_dcr: bool = True
    scopes: list[str] | None = None
    resource: str | None = None
    omit_resource: bool = False
    audience: str | None = None
    issuer: str | None = None
    authorization_endpoint: str | None = None
    token_endpoint: str | None = None
    registration_endpoint: str | None = None
    revocation_endpoint: str | None = None
    extra_headers: dict[str, SecretStr] = Field(default_factory=dict, max_length=32)

    @field_validator("extra_headers")
    @classmethod
    def _extra(cls, v: dict[str, SecretStr]) -> dict[str, SecretStr]:
        _check_headers({k: val.get_secret_value() for k, val in v.items()}, oauth=True)
        return v

    @model_validator(mode="after")
    def _client_fits(self) -> OAuth2Auth:
        if self.grant_type == "client_credentials" and not self.client_id:
            raise ValueError("client_credentials needs the client_id (and its secret or private key)")
        if self.token_endpoint_auth_method == "private_key_jwt" and self.private_key is None:
            raise ValueError("private_key_jwt needs private_key (the client's PEM private key)")
        if (
            self.token_endpoint_auth_method in ("client_secret_post", "client_secret_basic")
            and self.client_id
            and self.client_secret is None
        ):
            raise ValueError(
                f"token_endpoint_auth_method {self.token_endpoint_auth_method} needs the client_secret of client"
                f" {self.client_id!r} (or use none for a public client, or leave client_id out to register one)"
            )
        if self.private_key is not None and self.token_endpoint_auth_method not in (None, "private_key_jwt"):
            raise ValueError("private_key is only used with token_endpoint_auth_method private_key_jwt")
        return self


AuthSpec = Annotated[
    NoAuth | BearerAuth | ApiKeyAuth | CustomHeadersAuth | JwtPassthroughAuth | OAuth2Auth, Field(discriminator="type")
]


class ConnectorCreate(_Strict):
    name: str = Field(pattern=NAME_PATTERN, description="a slug; it becomes the tool prefix")
    url: str = Field(min_length=8, max_length=2000, description="the MCP server URL")
    transport: Transport = "streamable_http"
    description: str = Field(default="", max_length=2000)
    scope: Scope = "organization"
    auth: AuthSpec = Field(default_factory=NoAuth)
    expires_at: datetime | None = Field(default=None, description="when a static credential stops working")
    timeout_s: float = Field(default=60.0, gt=0, le=600)


class ConnectorUpdate(_Strict):
    url: str | None = Field(default=None, min_length=8, max_length=2000)
    transport: Transport | None = None
    description: str | None = Field(default=None, max_length=2000)
    auth: AuthSpec | None = None
    expires_at: datetime | None = None
    timeout_s: float | None = Field(default=None, gt=0, le=600)


class ConnectorView(BaseModel):
    id: UUID
    name: str
    url: str
    transport: str
    description: str
    scope: str
    auth_type: str
    auth_config: dict[str, object]
    secret_stored: bool
    status: str
    status_reason: str | None
    warnings: list[str]
    config_version: int
    expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    last_used_at: datetime | None
    # oauth2 only: discovered issuer and endpoints, client id, whether a client secret is
    # stored, redirect URI, granted scopes; never a secret
    oauth: dict[str, object] | None = None
    # the answer to a disconnect of an oauth2 connector: how revoking went, per token
    # (`refresh` / `access`: outcome counts per token; `complete`; `access_valid_until`
    # when the provider did not revoke an access token that has not expired yet)
    revocation: dict[str, object] | None = None
