"""Agent API keys: `wk_<prefix>_<secret>`. Shown once; only the SHA-256 of the whole key
is stored (the secret part is 256 random bits, so a fast hash is enough); the prefix
identifies the key in lists and logs. Verified keys are cached briefly; a revocation
event clears the cache in every replica."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from starlette.requests import Request
from warden_common.bus import Bus
from warden_common.contracts import Actor, EventType
from warden_common.contracts.registry import PROFILE_PATTERN
from warden_common.errors import Forbidden, NotFound, Unauthorized

from warden_proxy.jwt_callers import JwtCallers
from warden_proxy.store import Store

__all__ = ["AgentKeyCreate", "AgentKeys", "Principal", "request_principal", "service_principal"]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: an agent key (bound to a profile) or an internal service."""

    # "agent" | "user" (a bearer JWT from the configured issuer) | "service" | "admin" (an admin
    # running a tool as a profile, POST /v1/admin/tools/{name}/call)
    kind: str
    id: str  # key prefix, "jwt:<user>", service name or the admin's name
    profile: str
    user: str | None = None
    # the embedding site's JWE for jwt_passthrough connectors (a secret; never printed)
    jwe: str | None = field(default=None, repr=False)

    def with_jwe(self, jwe: str | None) -> Principal:
        return replace(self, jwe=jwe) if jwe else self

    def actor(self) -> Actor:
        kind = self.kind if self.kind in ("agent", "user", "admin") else "service"
        return Actor(kind=kind, id=self.id)  # type: ignore[arg-type]


def service_principal(profile: str, caller: str | None, user: str | None, act_for: frozenset[str]) -> Principal:
    """The principal of a call from an internal service over NATS.

    `caller` is the NATS user named by the subject the call came on (`calls.<profile>.<user>`:
    the server lets each internal user publish only on its own), so it is the actor; None on the
    older subjects, where only "a service of this profile" is known (`profile:<profile>`). What
    the caller says about itself (a `Warden-Caller` header) is not identity. A `user` the call
    claims to act for is accepted only from the callers `act_for` lists (`*`: any caller),
    and is recorded as the user acted for, never as the actor."""
    who = caller or f"profile:{profile}"
    if user is not None and "*" not in act_for and (caller is None or caller not in act_for):
        who_says = f"internal service {caller!r}" if caller else f"a caller on profile {profile!r}'s unattested subject"
        raise Forbidden(
            f"{who_says} may not act for a user: list its NATS user in WARDEN_PROXY_ACT_FOR_USERS to allow it, "
            "or call without `user`"
        )
    return Principal(kind="service", id=who, profile=profile, user=user)


class AgentKeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    profile: str = Field(pattern=PROFILE_PATTERN)
    # the end user this key acts for (per-user connectors use that user's own tokens)
    user: str | None = Field(default=None, min_length=1, max_length=200)


class AgentKeyView(BaseModel):
    id: str
    prefix: str
    name: str
    profile: str
    created_by: str
    user: str | None = None
    created_at: datetime
    revoked_at: datetime | None = None


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class AgentKeys:
    def __init__(self, store: Store, bus: Bus, ttl_s: float, *, jwt: JwtCallers | None = None) -> None:
        self.store = store
        self.bus = bus
        self.ttl_s = ttl_s
        # callers with a bearer JWT from the configured issuer (optional)
        self.jwt = jwt
        self._cache: dict[str, tuple[float, Principal]] = {}

    async def create(self, body: AgentKeyCreate, actor: str) -> dict[str, Any]:
        prefix = secrets.token_hex(4)
        key = f"wk_{prefix}_{secrets.token_urlsafe(32)}"
        row = await self.store.insert_key(
            prefix=prefix, key_hash=_hash(key), name=body.name, profile=body.profile, created_by=actor, user=body.user
        )
        self.bus.emit(
            self.bus.new_event(
                EventType.agent_key_created,
                actor=Actor(kind="admin", id=actor),
                refs={"profile": body.profile},
                data={"prefix": prefix, "name": body.name},
            )
        )
        view = _view(row).model_dump(mode="json")
        view["key"] = key  # the only time the key is ever shown
        return view

    async def list(self) -> list[AgentKeyView]:
        return [_view(r) for r in await self.store.list_keys()]

    async def revoke(self, prefix: str, actor: str) -> AgentKeyView:
        row = await self.store.revoke_key(prefix)
        if row is None:
            raise NotFound(f"no agent key with prefix {prefix!r}")
        self.forget(prefix)
        self.bus.emit(
            self.bus.new_event(
                EventType.agent_key_revoked,
                actor=Actor(kind="admin", id=actor),
                refs={"profile": row["profile"]},
                data={"prefix": prefix},
            )
        )
        return _view(row)

    def forget(self, prefix: str | None) -> None:
        if prefix is None:
            self._cache.clear()
            return
        for h in [h for h, (_, p) in self._cache.items() if p.id == prefix]:
            del self._cache[h]

    async def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise Unauthorized("send Authorization: Bearer <agent API key>")
        scheme, _, key = authorization.partition(" ")
        key = key.strip()
        if scheme.lower() == "bearer" and self.jwt is not None and not key.startswith("wk_"):
            user, profile = await self.jwt.authenticate(key)
            return Principal(kind="user", id=f"jwt:{user}"[:200], profile=profile, user=user)
        if scheme.lower() != "bearer" or not key.startswith("wk_"):
            raise Unauthorized("send Authorization: Bearer <agent API key>")
        h = _hash(key)
        now = time.monotonic()
        hit = self._cache.get(h)
        if hit is not None and hit[0] > now:
            return hit[1]
        parts = key.split("_", 2)
        if len(parts) != 3:
            raise Unauthorized("malformed agent API key")
        row = await self.store.key_by_prefix(parts[1])
        if row is None or row["revoked_at"] is not None or not hmac.compare_digest(row["key_hash"], h):
            raise Unauthorized("unknown or revoked agent API key")
        principal = Principal(kind="agent", id=row["prefix"], profile=row["profile"], user=row["user_id"])
        self._cache[h] = (now + self.ttl_s, principal)
        return principal


def _view(row: Any) -> AgentKeyView:
    return AgentKeyView(
        id=str(row["id"]),
        prefix=row["prefix"],
        name=row["name"],
        profile=row["profile"],
        created_by=row["created_by"],
        user=row["user_id"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


async def request_principal(request: Request) -> Principal:
    """The caller of an HTTP route (agent key or JWT in Authorization), with the embedding
    site's JWE (X-Warden-JWE) when it sends one. A FastAPI dependency for every agent route."""
    keys: AgentKeys = request.state.keys
    principal = await keys.authenticate(request.headers.get("authorization"))
    return principal.with_jwe(request.headers.get("x-warden-jwe"))
