"""Console settings: env prefix `WARDEN_CONSOLE_`, nested groups with `__`
(`WARDEN_CONSOLE_SERVICES__PROXY=http://proxy:8083`). No credential of its own: every request
to a service carries the signed-in person's admin token or agent key."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings
from warden_common.runtime import settings_config
from warden_common.settings import HttpSettings

__all__ = ["ServiceUrls", "Settings"]


class ServiceUrls(BaseModel):
    """Where the console reaches each service's HTTP API (inside the cluster)."""

    connectors: str = "http://127.0.0.1:8081"
    registry: str = "http://127.0.0.1:8082"
    proxy: str = "http://127.0.0.1:8083"
    audit: str = "http://127.0.0.1:8084"

    @field_validator("connectors", "registry", "proxy", "audit")
    @classmethod
    def _http(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("a service URL starts with http:// or https://")
        return v.rstrip("/")


class Settings(BaseSettings):
    model_config = settings_config("WARDEN_CONSOLE_")

    http: HttpSettings = Field(default_factory=lambda: HttpSettings(port=8080))
    services: ServiceUrls = Field(default_factory=ServiceUrls)
    # the MCP endpoint as agents reach it, for the client config shown with a new agent key
    # (default: the proxy's URL above + /mcp)
    mcp_url: str | None = None
    # a session ends this long after sign-in (the cookie and the server-side entry alike)
    session_ttl_s: float = Field(default=8 * 3600, ge=60, le=7 * 24 * 3600)
    # sessions held at once; the oldest is dropped beyond this
    max_sessions: int = Field(default=10_000, ge=1, le=1_000_000)
    # the cookie's Secure flag: keep it on behind https; off only for a plain-http dev run
    cookie_secure: bool = True
    # every request to a service (a streamed call or tail: until its first byte)
    upstream_timeout_s: float = Field(default=30.0, gt=0, le=600)
    log_level: str = "info"
