"""Audit settings: env prefix `WARDEN_AUDIT_`, nested groups with `__`
(`WARDEN_AUDIT_POSTGRES__DSN`, `WARDEN_AUDIT_NATS__URL`, `WARDEN_AUDIT_REDACTION='[...]'`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from warden_common.runtime import ServiceSettings, settings_config
from warden_common.settings import HttpSettings

__all__ = ["RedactionRule", "Settings"]

Action = Literal["keep", "hash", "drop"]


class RedactionRule(BaseModel):
    """How the arguments and result of the tools matching `tools` (a glob) are stored.

    `fields` maps key-name globs (matched at any depth) to an action; keys matching none
    get `default`. `drop_all` stores neither arguments nor result. The first rule whose
    `tools` glob matches a tool applies.
    """

    tools: str = Field(min_length=1)
    drop_all: bool = False
    fields: dict[str, Action] = Field(default_factory=dict)
    default: Action = "keep"


class Settings(ServiceSettings):
    model_config = settings_config("WARDEN_AUDIT_")

    http: HttpSettings = Field(default_factory=lambda: HttpSettings(port=8084))

    # ingest
    batch_size: int = Field(default=1000, ge=1, le=10_000)
    # batches written at once, each on its own connection: one claims its ids while another
    # holds the chain (bench/README.md, audit)
    writers: int = Field(default=2, ge=1, le=8)
    # when a fetch brings only a few events, wait this long for more before writing them:
    # a light load then costs a transaction per linger, not per event (adds up to this much lag)
    linger_s: float = Field(default=0.01, ge=0, le=1)
    fetch_timeout_s: float = Field(default=1.0, gt=0, le=30)
    ack_wait_s: float = Field(default=30.0, ge=1, le=3600)
    max_ack_pending: int = Field(default=20_000, ge=1)
    # lag above this shows as `degraded` in /readyz (readiness still passes)
    lag_degraded: int = Field(default=10_000, ge=0)

    # what is stored
    event_data_cap_bytes: int = Field(default=64 * 1024, ge=1024)
    execution_field_cap_bytes: int = Field(default=16 * 1024, ge=256)
    dead_letter_cap_bytes: int = Field(default=64 * 1024, ge=256)
    redaction: list[RedactionRule] = Field(default_factory=list)
    # key for `hash` redactions (HMAC-SHA256); without one, plain SHA-256
    redaction_hash_key: SecretStr | None = None

    # tamper evidence beyond the database: lane heads signed (HMAC-SHA256) with this key, which
    # the database never holds, into `checkpoint_file` (outside it); `verify` checks them
    chain_key: SecretStr | None = None
    chain_key_file: Path | None = None  # or read the key from this file (a mounted Secret)
    checkpoint_file: Path | None = None

    # retention
    retention_days: int = Field(default=90, ge=1, le=36_500)
    maintenance_interval_s: float = Field(default=3600.0, gt=0)
    retention_batch: int = Field(default=5000, ge=10, le=100_000)

    # live tail: events buffered per subscriber before it is told it missed some
    tail_buffer: int = Field(default=10_000, ge=10)

    @model_validator(mode="after")
    def _checkpoints_need_key_and_file(self) -> Settings:
        if self.chain_key is not None and self.chain_key_file is not None:
            raise ValueError("set one of WARDEN_AUDIT_CHAIN_KEY and WARDEN_AUDIT_CHAIN_KEY_FILE, not both")
        keyed = self.chain_key is not None or self.chain_key_file is not None
        if keyed != (self.checkpoint_file is not None):
            raise ValueError(
                "signed checkpoints need both a key (WARDEN_AUDIT_CHAIN_KEY or _FILE) and "
                "WARDEN_AUDIT_CHECKPOINT_FILE (a path outside the database)"
            )
        return self

    def chain_key_bytes(self) -> bytes | None:
        """The checkpoint key (from the setting or its file), or None when checkpoints are off."""
        if self.chain_key is not None:
            key = self.chain_key.get_secret_value().encode()
        elif self.chain_key_file is not None:
            try:
                key = self.chain_key_file.read_bytes().strip()
            except OSError as e:
                raise ValueError(
                    f"WARDEN_AUDIT_CHAIN_KEY_FILE {self.chain_key_file} cannot be read: {e.strerror}"
                ) from None
        else:
            return None
        if len(key) < 16:
            raise ValueError("the audit chain key (WARDEN_AUDIT_CHAIN_KEY) must be at least 16 bytes")
        return key
