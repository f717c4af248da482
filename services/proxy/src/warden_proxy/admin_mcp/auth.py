"""Who may use /mcp/admin: the admin token (compared in constant time), or, when JWT callers
are configured, a JWT from that issuer whose `scope` (or `scp`) carries `warden:admin`.
An agent key never: it is refused with a message that says what to send instead."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import SecretStr
from warden_common.errors import Unauthorized
from warden_common.web import parse_admin_tokens

from warden_proxy.jwt_callers import JwtCallers

__all__ = ["ADMIN_SCOPE", "AdminAuth", "AdminIdentity", "has_admin_scope"]

ADMIN_SCOPE = "warden:admin"
_HOW = "send Authorization: Bearer <admin token (WARDEN_ADMIN_TOKEN)>"


@dataclass(frozen=True, slots=True)
class AdminIdentity:
    """The admin behind a request; `actor` is what the services record for its actions."""

    actor: str
    via: Literal["token", "jwt"]


def has_admin_scope(claims: dict[str, Any]) -> bool:
    """OAuth `scope` is a space-separated string (RFC 9068 §2.2.3); some IdPs send `scp`, a list."""
    scopes: list[str] = []
    for name in ("scope", "scp"):
        v = claims.get(name)
        if isinstance(v, str):
            scopes += v.split()
        elif isinstance(v, list):
            scopes += [s for s in v if isinstance(s, str)]
    return ADMIN_SCOPE in scopes


class AdminAuth:
    def __init__(self, token: SecretStr, jwt: JwtCallers | None, named: SecretStr | None = None) -> None:
        # every admin token by its admin's name (ADMIN_TOKEN is `admin`; ADMIN_TOKENS names more)
        self._tokens = list(parse_admin_tokens(token, named).items())
        self.jwt = jwt

    @property
    def how(self) -> str:
        if self.jwt is None:
            return _HOW
        return f"{_HOW[:-1]} or a JWT from the configured issuer with the {ADMIN_SCOPE} scope>"

    async def authenticate(self, authorization: str | None) -> AdminIdentity:
        if not authorization:
            raise Unauthorized(f"Warden's admin MCP endpoint: {self.how}")
        scheme, _, value = authorization.partition(" ")
        value = value.strip()
        if scheme.lower() != "bearer" or not value:
            raise Unauthorized(f"Warden's admin MCP endpoint: {self.how}")
        who = None
        for name, expected in self._tokens:  # no early exit: the time taken says nothing about which
            if hmac.compare_digest(value.encode(), expected) and who is None:
                who = name
        if who is not None:
            return AdminIdentity(actor=who, via="token")
        if value.startswith("wk_"):
            raise Unauthorized(
                f"an agent API key cannot manage Warden: /mcp/admin is for admins ({self.how}); agents use /mcp"
            )
        if self.jwt is not None and value.count(".") == 2:
            claims = await self.jwt.verify(value)
            if not has_admin_scope(claims):
                raise Unauthorized(f"the bearer token lacks the {ADMIN_SCOPE} scope that /mcp/admin requires")
            return AdminIdentity(actor=self.jwt.user_of(claims), via="jwt")
        raise Unauthorized(f"the bearer token is not the admin token: {self.how}")
