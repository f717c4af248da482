from __future__ import annotations

from pydantic import Field
from warden_common.runtime import ServiceSettings, settings_config
from warden_common.settings import HttpSettings


class Settings(ServiceSettings):
    model_config = settings_config("WARDEN_AUDIT_")

    http: HttpSettings = Field(default_factory=lambda: HttpSettings(port=8084))
    batch_size: int = Field(default=500, ge=1, le=10_000)
    # raw payload kept for a dead letter, at most
    dead_letter_cap_bytes: int = Field(default=64 * 1024, ge=1024)
