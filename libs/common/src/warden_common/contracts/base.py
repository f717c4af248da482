"""Base pieces of every NATS contract: frozen messages, typed replies, subjects."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ErrorCode", "Message", "Reply", "ReplyError", "Subject", "VERSION"]

VERSION = "v1"


class Message(BaseModel):
    """Every message on NATS: frozen; received leniently, sent strictly.

    Contracts grow by optional fields, so during a rolling upgrade a replica must accept a
    message from a newer one: parsing ignores fields it does not know. Sending stays strict:
    a message is built from its declared fields only (mypy, run over every package, refuses an
    unknown keyword: pydantic models are dataclass-like to type checkers), and is serialized
    from those fields alone.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")


class ErrorCode(StrEnum):
    """The closed set of error codes a reply may carry."""

    invalid = "invalid"
    not_found = "not_found"
    conflict = "conflict"
    forbidden = "forbidden"
    unauthorized = "unauthorized"
    unavailable = "unavailable"
    timeout = "timeout"
    internal = "internal"
    # credential refusals (connectors -> proxy)
    consent_required = "consent_required"
    reauth_required = "reauth_required"
    expired = "expired"
    disconnected = "disconnected"
    # call pipeline
    approval_rejected = "approval_rejected"
    approval_timeout = "approval_timeout"
    upstream_error = "upstream_error"
    circuit_open = "circuit_open"


class ReplyError(Message):
    code: ErrorCode
    message: str = Field(max_length=2000)
    retryable: bool = False
    details: dict[str, Any] = Field(default_factory=dict)


T = TypeVar("T", bound=BaseModel)


class Reply(Message, Generic[T]):
    """A request/reply answer: exactly one of `result` or `error`."""

    result: T | None = None
    error: ReplyError | None = None


Req = TypeVar("Req", bound=Message)
Rep = TypeVar("Rep", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Subject(Generic[Req, Rep]):
    """A request/reply subject with its request and result models.

    `name` is relative to `<root>.v1.`; the root is `warden` in production and a unique
    prefix per test run, so runs sharing a NATS server never see each other.
    """

    name: str
    request: type[Req]
    result: type[Rep]

    def on(self, root: str) -> str:
        return f"{root}.{VERSION}.{self.name}"
