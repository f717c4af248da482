"""Server-side sessions. The browser holds only the session id, in an httpOnly,
SameSite=Strict cookie; the admin token, agent key or (single sign-on) access token it was
opened with stays here, in memory, and goes only to the services. A session opened through
the OIDC issuer ends when its access token expires, if that comes first. Each session has
its own CSRF token, which the page reads from `GET /api/session` (same origin only) and
sends as `X-CSRF-Token` with every state-changing request.

Sessions live in this process: run one replica, or pin a browser to one (sticky sessions).
A restart signs everyone out, which is the safe direction."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Literal

from pydantic import SecretStr

__all__ = ["Role", "Session", "SessionStore", "TryKey", "Via"]

Role = Literal["admin", "user"]
# how it signed in: the admin token, an agent key, or the OIDC issuer
Via = Literal["token", "agent_key", "oidc"]


@dataclass
class TryKey:
    """A short-lived agent key the console made for an admin's "Try it" run as a profile."""

    key: SecretStr
    prefix: str


@dataclass
class Session:
    role: Role
    # what goes to the services: the admin token or agent key it signed in with; for single
    # sign-on, the root admin token (an admin) or the person's access token (an end user)
    secret: SecretStr = field(repr=False)
    csrf: str = field(repr=False)
    expires_at: float
    user: str | None = None  # an end user: the user its key or token acts for
    profile: str | None = None
    # an admin signed in through the issuer: the name the services record (`X-Warden-Actor`)
    actor: str | None = None
    via: Via = "token"
    try_keys: dict[tuple[str, str], TryKey] = field(default_factory=dict, repr=False)

    @property
    def label(self) -> str:
        if self.role == "admin":
            return self.actor or "admin"
        return self.user or "agent key"


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class SessionStore:
    """Sessions by the SHA-256 of their id (the id itself is only in the cookie)."""

    def __init__(self, ttl_s: float, max_sessions: int) -> None:
        self.ttl_s = ttl_s
        self.max_sessions = max_sessions
        self._items: OrderedDict[str, Session] = OrderedDict()

    def open(
        self,
        role: Role,
        secret: SecretStr,
        *,
        user: str | None = None,
        profile: str | None = None,
        actor: str | None = None,
        via: Via = "token",
        not_after: float | None = None,
    ) -> tuple[str, Session, list[Session]]:
        """A new session: (its id for the cookie, the session, sessions dropped to make room).
        `not_after` (epoch seconds): it ends then if that is before its TTL runs out."""
        dropped = self.sweep()
        while len(self._items) >= self.max_sessions:
            dropped.append(self._items.popitem(last=False)[1])
        sid = secrets.token_urlsafe(32)
        s = Session(
            role=role,
            secret=secret,
            csrf=secrets.token_urlsafe(32),
            expires_at=min(time.time() + self.ttl_s, not_after if not_after is not None else float("inf")),
            user=user,
            profile=profile,
            actor=actor,
            via=via,
        )
        self._items[_digest(sid)] = s
        return sid, s, dropped

    def get(self, sid: str | None) -> Session | None:
        if not sid or len(sid) > 200:
            return None
        s = self._items.get(_digest(sid))
        if s is None:
            return None
        if s.expires_at <= time.time():
            self._items.pop(_digest(sid), None)
            return None
        return s

    def close(self, sid: str | None) -> Session | None:
        if not sid or len(sid) > 200:
            return None
        return self._items.pop(_digest(sid), None)

    def sweep(self) -> list[Session]:
        now = time.time()
        gone = [k for k, s in self._items.items() if s.expires_at <= now]
        return [self._items.pop(k) for k in gone]

    def all(self) -> list[Session]:
        return list(self._items.values())

    @staticmethod
    def csrf_ok(session: Session, sent: str | None) -> bool:
        return bool(sent) and hmac.compare_digest(session.csrf.encode(), (sent or "").encode())
