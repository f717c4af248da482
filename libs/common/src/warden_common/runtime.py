"""What every service's lifespan owns: the Postgres pool and the NATS bus.

Start: open the pool (migrating the service's schema), connect NATS, make sure the
events stream exists. Stop, in order: not ready, drain NATS (flushing queued events),
close the pool. A failed start unwinds what it opened.
"""

from __future__ import annotations

import gc
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from warden_common.bus import Bus
from warden_common.contracts.events import Service
from warden_common.db import Database
from warden_common.settings import HttpSettings, NatsSettings, PostgresSettings
from warden_common.web import ReadinessCheck

__all__ = ["Runtime", "ServiceSettings", "refuse_placeholder", "settings_config", "settle_heap"]

# words of the values people copy from examples (deploy/secrets.example.yaml says CHANGE-ME)
_PLACEHOLDERS = ("changeme", "replaceme", "placeholder", "yourtoken", "yoursecret", "example", "admintoken")


def refuse_placeholder(secret: SecretStr) -> SecretStr:
    """Refuse a secret copied from an example, or one with too few distinct characters
    (`aaaaaaaaaaaaaaaa`, `0123456789abcdef` passes): such a value is known to everyone."""
    value = secret.get_secret_value()
    folded = "".join(c for c in value.lower() if c.isalnum())
    if any(p in folded for p in _PLACEHOLDERS) or len(set(value)) < 8:
        raise ValueError("is a placeholder, not a secret: generate one, e.g. `openssl rand -base64 32`")
    return secret


def settings_config(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, env_nested_delimiter="__", extra="ignore")


class ServiceSettings(BaseSettings):
    """Fields every service has. Subclasses set `model_config = settings_config("WARDEN_X_")`."""

    nats: NatsSettings = Field(default_factory=NatsSettings)
    postgres: PostgresSettings
    http: HttpSettings = Field(default_factory=HttpSettings)
    # bearer token for the admin HTTP API; no default: a service without one does not start
    admin_token: SecretStr = Field(min_length=16)
    # more admins, each with a name the audit records: `alice:<token>,bob:<token>` (optional;
    # ADMIN_TOKEN is the admin named `admin`)
    admin_tokens: SecretStr | None = None
    log_level: str = "info"

    @field_validator("admin_token")
    @classmethod
    def _not_a_placeholder(cls, v: SecretStr) -> SecretStr:
        return refuse_placeholder(v)


def settle_heap() -> None:
    """For a hot-path service once start-up is done: what start-up built lives as long as the
    process, so keep it out of the collector's full passes; and collect the young generation
    less often (a call or an ingest batch allocates many short-lived containers at a time;
    see bench/README.md, proxy and audit)."""
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


@dataclass
class Runtime:
    service: Service
    db: Database
    bus: Bus
    ready: bool = False
    _stack: AsyncExitStack = field(default_factory=AsyncExitStack)

    @classmethod
    def build(cls, service: Service, settings: ServiceSettings, schema: str) -> Runtime:
        return cls(
            service=service,
            db=Database(settings.postgres, schema),
            bus=Bus(settings.nats, service),
        )

    async def start(self, migrations_package: str) -> None:
        async with AsyncExitStack() as stack:
            await self.db.connect(migrations_package)
            stack.push_async_callback(self.db.close)
            await self.bus.connect()
            stack.push_async_callback(self.bus.close)
            await self.bus.ensure_events_stream()
            self._stack = stack.pop_all()

    async def stop(self) -> None:
        self.ready = False
        await self._stack.aclose()

    def checks(self) -> dict[str, ReadinessCheck]:
        async def nats() -> str | None:
            # a round trip, not the connected flag: a hung server keeps the socket open
            return await self.bus.probe()

        async def postgres() -> str | None:
            await self.db.ping()
            return None

        async def started() -> str | None:
            return None if self.ready else "starting"

        return {"started": started, "nats": nats, "postgres": postgres, "events": self.bus.events_check}
