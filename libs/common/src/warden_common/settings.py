"""Setting groups shared by every service. Each service nests these in its own
`Settings(BaseSettings)` with its own env prefix; this package reads no environment."""

from __future__ import annotations

import base64
from pathlib import Path

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

__all__ = ["CryptoSettings", "HttpSettings", "NatsSettings", "PostgresSettings", "nats_servers"]


def nats_servers(url: str) -> list[str]:
    """`nats://a:4222,nats://b:4222` -> the URLs, in order (one URL -> a list of one)."""
    return [u.strip() for u in url.split(",") if u.strip()]


class NatsSettings(BaseModel):
    # one server, or the servers of one cluster separated by commas (the client tries each,
    # and moves to another when its server goes away)
    url: str = Field(default="nats://127.0.0.1:4222", min_length=1)
    user: str | None = None
    password: SecretStr | None = None
    # subject root: `warden` in production; a unique prefix per test run
    root: str = Field(default="warden", pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,40}$")
    request_timeout_s: float = Field(default=5.0, gt=0, le=300)
    dedup_window_s: float = Field(default=120.0, gt=0)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    # copies JetStream keeps of each stream this service creates (events, durable calls): 1 on
    # one server (the embedded run), 3 on a 3-node cluster (deploy/overlays/ha)
    stream_replicas: int = Field(default=1, ge=1, le=5)
    # The bus's size limits, one set (warden_common.limits), checked against the server's
    # max_payload when connecting. The largest message this service sends (request, answer,
    # durable result); default: what the server accepts.
    max_message_bytes: int | None = Field(default=None, ge=64 * 1024, le=1024 * 1024 * 1024)
    # no event is larger; its values over `event_value_max_bytes` are stored truncated
    # (size and SHA-256 kept)
    event_max_bytes: int = Field(default=512 * 1024, ge=16 * 1024, le=1024 * 1024 * 1024)
    event_value_max_bytes: int = Field(default=16 * 1024, ge=1024, le=1024 * 1024 * 1024)
    # readiness fails when the oldest event not yet stored by the stream has waited longer
    event_stall_s: float = Field(default=60.0, gt=0, le=3600)
    # Events are written here when emitted and forgotten once stored (warden_common.journal),
    # so a killed process loses none: its next start, or another replica using the same
    # directory, publishes them. Unset or empty: the outbox is in memory only. `warden run` and
    # deploy/ set it; give every replica of a service the same directory where they share a disk.
    event_journal_dir: Path | None = None
    # how often a running process looks for the journals of dead processes to adopt
    event_journal_scan_s: float = Field(default=10.0, gt=0, le=3600)

    @property
    def servers(self) -> list[str]:
        """The server URLs in `url`, in order."""
        return nats_servers(self.url)

    @field_validator("event_journal_dir", mode="before")
    @classmethod
    def _empty_is_off(cls, v: object) -> object:
        return None if v == "" else v  # `NATS__EVENT_JOURNAL_DIR=` turns the journal off

    @field_validator("url")
    @classmethod
    def _some_server(cls, v: str) -> str:
        if not nats_servers(v):
            raise ValueError("names no NATS server: give nats://host:port, or several separated by commas")
        return v

    @model_validator(mode="after")
    def _value_within_event(self) -> NatsSettings:
        if self.event_value_max_bytes > self.event_max_bytes // 2:
            raise ValueError(
                f"nats.event_value_max_bytes ({self.event_value_max_bytes}) must be at most half of "
                f"nats.event_max_bytes ({self.event_max_bytes}): an event carries a few values and its envelope"
            )
        return self


class PostgresSettings(BaseModel):
    dsn: SecretStr
    pool_min: int = Field(default=1, ge=0, le=100)
    pool_max: int = Field(default=10, ge=1, le=200)
    command_timeout_s: float = Field(default=10.0, gt=0)


class HttpSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    # the URL people and other tools use to reach this service (printed, put in links)
    public_url: str | None = None


class CryptoSettings(BaseModel):
    """Key-encryption keys: `kid:base64key` pairs separated by commas, from env or a file.

    The first key is the active one (new records are sealed under it); the others only
    open older records until they are re-wrapped. There is no default key.
    """

    keys: SecretStr | None = None
    keys_file: Path | None = None

    @field_validator("keys_file")
    @classmethod
    def _exists(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_file():
            raise ValueError(f"key file {v} does not exist")
        return v

    def load(self) -> list[tuple[str, bytes]]:
        raw = self.keys.get_secret_value() if self.keys else ""
        if self.keys_file is not None:
            raw = self.keys_file.read_text().strip()
        if not raw:
            raise ValueError("no key-encryption key configured: set the service's CRYPTO__KEYS or CRYPTO__KEYS_FILE")
        out: list[tuple[str, bytes]] = []
        for part in raw.replace("\n", ",").split(","):
            part = part.strip()
            if not part:
                continue
            kid, sep, b64 = part.partition(":")
            if not sep or not kid:
                raise ValueError("each key must be written kid:base64key")
            try:
                key = base64.b64decode(b64, validate=True)
            except ValueError:
                raise ValueError(f"key {kid!r} is not valid base64") from None
            if len(key) != 32:
                raise ValueError(f"key {kid!r} must be 32 bytes (AES-256), got {len(key)}")
            out.append((kid, key))
        return out
