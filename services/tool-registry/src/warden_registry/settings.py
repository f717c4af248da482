"""Settings of the registry, from `WARDEN_REGISTRY_*` (nested groups with `__`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr
from warden_common.runtime import ServiceSettings, settings_config
from warden_common.settings import HttpSettings

__all__ = ["Settings"]


class Settings(ServiceSettings):
    model_config = settings_config("WARDEN_REGISTRY_")

    http: HttpSettings = Field(default_factory=lambda: HttpSettings(port=8082))
    # list every connector's tools again this often (0 = only on demand and on list_changed)
    refresh_period_s: float = Field(default=3600.0, ge=0)
    # a tool whose description or schema changed upstream is held from agents until re-approved
    hold_on_drift: bool = True
    # descriptions reach an agent's context: longer ones are cut to this many characters
    description_cap: int = Field(default=2000, ge=100, le=20_000)
    # one listing through the proxy (each page) may take this long
    discovery_timeout_s: float = Field(default=60.0, gt=0, le=600)
    # tools per page asked of the proxy (NATS messages are size-capped)
    discovery_page_size: int = Field(default=500, ge=1, le=10_000)
    # tool search: `auto` uses the hybrid engine (warden_registry.search) when installed
    search_engine: Literal["auto", "hybrid", "lexical"] = "auto"
    # the hybrid engine's embedder: `local` (all-MiniLM-L6-v2, packaged), `openai` (an
    # OpenAI-compatible /embeddings endpoint), `none` (BM25 only)
    search_embedder: Literal["local", "openai", "none"] = "local"
    search_threads: int = Field(default=1, ge=1, le=64)
    search_embedder_url: str | None = None
    search_embedder_model: str | None = None
    search_embedder_api_key: SecretStr | None = None

    def search_options(self) -> dict[str, Any]:
        """What the hybrid engine's `create_engine` takes."""
        opts: dict[str, Any] = {"kind": self.search_embedder}
        if self.search_embedder == "local":
            opts["threads"] = self.search_threads
        elif self.search_embedder == "openai":
            opts |= {
                "base_url": self.search_embedder_url,
                "model": self.search_embedder_model,
                "api_key": self.search_embedder_api_key,
            }
        return opts
