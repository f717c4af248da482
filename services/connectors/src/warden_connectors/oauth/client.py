"""The OAuth client Warden acts as, for one authorization server, and how it authenticates."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, SecretStr, model_validator

__all__ = ["AuthMethod", "ClientRegistration", "RegistrationSource", "SigningAlg", "StaticClient"]

AuthMethod = Literal["client_secret_post", "client_secret_basic", "private_key_jwt", "none"]
# private_key_jwt (RFC 7523 §2.2): what the client assertion may be signed with
SigningAlg = Literal["ES256", "ES384", "RS256", "PS256", "EdDSA"]
RegistrationSource = Literal["static", "cimd", "dcr"]


class StaticClient(BaseModel):
    """A client the admin registered with the provider by hand."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    client_id: str
    client_secret: SecretStr | None = None
    token_endpoint_auth_method: AuthMethod | None = None  # None: secret -> basic, no secret -> none
    # private_key_jwt: the client's private key (PEM) and the algorithm the provider expects
    private_key: SecretStr | None = None
    signing_alg: SigningAlg | None = None

    @model_validator(mode="after")
    def _secret_matches_method(self) -> StaticClient:
        if self.token_endpoint_auth_method in ("client_secret_post", "client_secret_basic") and not self.client_secret:
            raise ValueError(f"{self.token_endpoint_auth_method} needs a client secret")
        if self.token_endpoint_auth_method == "private_key_jwt" and not self.private_key:
            raise ValueError("private_key_jwt needs the client's private key")
        return self

    @property
    def auth_method(self) -> AuthMethod:
        if self.token_endpoint_auth_method:
            return self.token_endpoint_auth_method
        return "client_secret_basic" if self.client_secret else "none"


class ClientRegistration(BaseModel):
    """What the service persists per (connector, issuer): sealed, since it may hold a secret."""

    model_config = ConfigDict(frozen=True)

    issuer: str
    client_id: str
    client_secret: SecretStr | None = None
    token_endpoint_auth_method: AuthMethod
    source: RegistrationSource
    redirect_uri: str
    client_secret_expires_at: datetime | None = None  # None = never (RFC 7591: 0)
    registration_access_token: SecretStr | None = None
    registration_client_uri: str | None = None
    private_key: SecretStr | None = None
    signing_alg: SigningAlg | None = None

    def secrets(self) -> tuple[str, ...]:
        """Secret values, for scrubbing provider text."""
        out = []
        for s in (self.client_secret, self.registration_access_token, self.private_key):
            if s is not None:
                out.append(s.get_secret_value())
        return tuple(out)
