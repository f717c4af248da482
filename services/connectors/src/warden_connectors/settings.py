from __future__ import annotations

from pydantic import Field, SecretStr, field_validator
from warden_common.runtime import ServiceSettings, settings_config
from warden_common.settings import CryptoSettings, HttpSettings

from warden_connectors.oauth import ClientMetadataDocument, validate_cimd_url


class Settings(ServiceSettings):
    model_config = settings_config("WARDEN_CONNECTORS_")

    http: HttpSettings = Field(default_factory=lambda: HttpSettings(port=8081))
    crypto: CryptoSettings = Field(default_factory=CryptoSettings)
    # dev/test only: allow http:// and loopback/private upstream and OAuth URLs
    allow_insecure_urls: bool = False
    # warn this many days before a static credential expires
    expiry_warning_days: int = Field(default=7, ge=0, le=365)
    # how often `warden_connectors_needing_attention` is read again from the store
    attention_scan_s: float = Field(default=15.0, gt=0, le=3600)
    # where browsers reach this service; the redirect URI is `<this>/connect/callback`
    # (default: http.public_url, else http://<host>:<port>)
    callback_base_url: str | None = None
    # key of the consent `state` (32+ bytes, every replica the same); default: derived from the
    # active key-encryption key
    state_key: SecretStr | None = None
    # how long a consent link (its signed, single-use `state`) stays valid
    state_ttl_s: float = Field(default=600.0, ge=60, le=3600)
    # refresh an access token this long before it expires (at most half its lifetime)
    refresh_skew_s: float = Field(default=60.0, ge=0, le=3600)
    # each request to an authorization server
    oauth_timeout_s: float = Field(default=10.0, gt=0, le=120)
    # the client_name Warden registers under (DCR)
    client_name: str = Field(default="Warden", max_length=100)
    # public https URL of Warden's client ID metadata document (MCP 2025-11-25 CIMD); it is the
    # client_id at authorization servers that advertise client_id_metadata_document_supported
    # (before DCR). This service serves the document at the URL's path; route the URL here.
    client_metadata_url: str | None = None

    @field_validator("client_metadata_url")
    @classmethod
    def _cimd_url(cls, v: str | None) -> str | None:
        return validate_cimd_url(v) if v else None

    def client_metadata(self) -> ClientMetadataDocument | None:
        if not self.client_metadata_url:
            return None
        return ClientMetadataDocument(
            client_id=self.client_metadata_url, client_name=self.client_name, redirect_uris=(self.redirect_uri(),)
        )

    def redirect_uri(self) -> str:
        base = self.callback_base_url or self.http.public_url or f"http://{self.http.host}:{self.http.port}"
        return base.rstrip("/") + "/connect/callback"
