"""Token responses (RFC 6749 §5.1), validated into a `TokenSet` whose values never print."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, SecretStr
from warden_common.logging import register_secret

from .errors import InvalidTokenResponse

__all__ = ["TokenSet", "parse_token_response"]


class TokenSet(BaseModel):
    """What the service seals and stores per (connector, user)."""

    model_config = ConfigDict(frozen=True)

    access_token: SecretStr
    token_type: Literal["Bearer"] = "Bearer"
    expires_at: datetime | None = None  # absolute; None when the AS did not say
    refresh_token: SecretStr | None = None
    scope: tuple[str, ...] = ()
    id_token: SecretStr | None = None
    obtained_at: datetime

    def authorization_header(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token.get_secret_value()}"}

    def expires_within(self, seconds: float, now: datetime | None = None) -> bool:
        if self.expires_at is None:
            return False
        return self.expires_at - (now or datetime.now(UTC)) <= timedelta(seconds=seconds)

    def account(self) -> str | None:
        """The upstream account these tokens act as: `email` (else `sub`) of the ID token, else of
        a JWT access token. Read, not verified: they came straight from the token endpoint over
        the guarded connection (OIDC Core 3.1.3.7), and this is shown, never trusted for access."""
        for token in (self.id_token, self.access_token):
            claims = _jwt_claims(token.get_secret_value()) if token is not None else None
            if claims is None:
                continue
            for name in ("email", "preferred_username", "sub"):
                value = claims.get(name)
                if isinstance(value, str) and 0 < len(value) <= 320 and value.isprintable():
                    return value
        return None

    def secrets(self) -> tuple[str, ...]:
        return tuple(
            s.get_secret_value() for s in (self.access_token, self.refresh_token, self.id_token) if s is not None
        )


def parse_token_response(
    body: dict[str, Any],
    *,
    requested_scopes: Sequence[str] = (),
    previous_refresh_token: SecretStr | None = None,
    now: datetime | None = None,
    issuer: str = "the authorization server",
) -> TokenSet:
    now = now or datetime.now(UTC)
    access = body.get("access_token")
    if not isinstance(access, str) or not access:
        raise InvalidTokenResponse(f"{issuer} answered a token response without an access_token")
    token_type = body.get("token_type")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        shown = token_type if isinstance(token_type, str) else type(token_type).__name__
        raise InvalidTokenResponse(
            f"{issuer} issued a token of type {str(shown)[:40]!r}; Warden only uses Bearer tokens",
            details={"token_type": str(shown)[:40]},
        )
    expires_in = body.get("expires_in")
    expires_at = None
    if expires_in is not None:
        try:
            seconds = int(expires_in) if not isinstance(expires_in, bool) else -1
        except (TypeError, ValueError):
            seconds = -1
        if seconds <= 0:
            raise InvalidTokenResponse(
                f"{issuer} answered an invalid expires_in", details={"expires_in": str(expires_in)[:40]}
            )
        expires_at = now + timedelta(seconds=seconds)
    scope_raw = body.get("scope")
    if scope_raw is None:
        scope = tuple(requested_scopes)  # RFC 6749 §5.1: absent means as requested
    elif isinstance(scope_raw, str):
        scope = tuple(dict.fromkeys(scope_raw.split()))
    else:
        raise InvalidTokenResponse(f"{issuer} answered a scope that is not a string")
    refresh = body.get("refresh_token")
    if refresh is not None and (not isinstance(refresh, str) or not refresh):
        raise InvalidTokenResponse(f"{issuer} answered an invalid refresh_token")
    id_token = body.get("id_token")
    for s in (access, refresh, id_token):
        if isinstance(s, str):
            register_secret(s)
    return TokenSet(
        access_token=SecretStr(access),
        expires_at=expires_at,
        refresh_token=SecretStr(refresh) if refresh else previous_refresh_token,
        scope=scope,
        id_token=SecretStr(id_token) if isinstance(id_token, str) and id_token else None,
        obtained_at=now,
    )


def _jwt_claims(token: str) -> dict[str, Any] | None:
    parts = token.split(".")
    if len(parts) != 3 or len(parts[1]) > 16_384:
        return None
    try:
        doc = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    return doc if isinstance(doc, dict) else None
