from __future__ import annotations

from pydantic import Field
from warden_common.runtime import ServiceSettings, settings_config
from warden_common.settings import CryptoSettings, HttpSettings


class Settings(ServiceSettings):
    model_config = settings_config("WARDEN_CONNECTORS_")

    http: HttpSettings = Field(default_factory=lambda: HttpSettings(port=8081))
    crypto: CryptoSettings = Field(default_factory=CryptoSettings)
    # dev/test only: allow http:// and loopback/private upstream and OAuth URLs
    allow_insecure_urls: bool = False
    # warn this many days before a static credential expires
    expiry_warning_days: int = Field(default=7, ge=0, le=365)
