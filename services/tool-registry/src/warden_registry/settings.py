from __future__ import annotations

from pydantic import Field
from warden_common.runtime import ServiceSettings, settings_config
from warden_common.settings import HttpSettings


class Settings(ServiceSettings):
    model_config = settings_config("WARDEN_REGISTRY_")

    http: HttpSettings = Field(default_factory=lambda: HttpSettings(port=8082))
    # re-list every connector's tools this often (0 = only on demand and on list_changed)
    refresh_period_s: float = Field(default=3600.0, ge=0)
    # a tool whose description or schema changed upstream is held from agents until re-approved
    hold_on_drift: bool = True
    description_cap: int = Field(default=2000, ge=100, le=20000)
    discovery_timeout_s: float = Field(default=60.0, gt=0, le=600)
