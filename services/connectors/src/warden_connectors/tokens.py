"""OAuth tokens at rest and their refresh: sealed per (connector, user), refreshed once.

Single flight, in two layers (authlib's "one refresh lock per token"):
1. in this process, one `asyncio.Lock` per (connector, user): concurrent requests queue
   behind the first instead of each taking a database connection;
2. across replicas, `pg_advisory_xact_lock` on a hash of (connector id, user key) inside a
   transaction. After acquiring it the row is read again; only if it is *still* the version we
   saw (force) or still expiring does this replica call the token endpoint, and the rotated
   refresh token is written in the same transaction, before the lock is released.

The refresh threshold is the smaller of `skew_s` and half the token's lifetime, so short-lived
tokens are not refreshed on every request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import SecretStr
from warden_common.crypto import Sealer
from warden_common.errors import Unavailable
from warden_common.logging import register_secret
from warden_common.metrics import TOKEN_REFRESHES, connector_label

from warden_connectors.consent import Consent
from warden_connectors.errors import ConsentRequired, CredentialExpired, ReauthRequired
from warden_connectors.oauth import OAuthError, OAuthServer, TokenSet, client_credentials, refresh
from warden_connectors.oauth import ReauthRequired as OAuthReauth
from warden_connectors.store import ConnectorRow, Store, TokenRow

__all__ = ["RefreshOutcome", "TokenVault", "is_client_credentials", "token_aad"]

log = logging.getLogger(__name__)

RefreshOutcome = Literal["refreshed", "refresh_failed", "reauth_required", "expired"]
OnChange = Callable[[ConnectorRow, str, RefreshOutcome, dict[str, Any]], Awaitable[None]]


def is_client_credentials(row: ConnectorRow) -> bool:
    return row["auth_type"] == "oauth2" and row["auth_config"].get("grant_type") == "client_credentials"


def token_aad(cid: uuid.UUID, user_key: str) -> str:
    return f"connectors/token/{cid}/{user_key}"


@dataclass(frozen=True)
class Held:
    """An opened token row."""

    tokens: TokenSet
    version: int
    status: str
    issuer: str | None

    def __repr__(self) -> str:
        return f"Held(version={self.version}, status={self.status!r})"


class TokenVault:
    def __init__(self, store: Store, sealer: Sealer, consent: Consent, *, skew_s: float, on_change: OnChange) -> None:
        self.store = store
        self.sealer = sealer
        self.consent = consent
        self.skew_s = skew_s
        self.on_change = on_change
        self._locks: dict[tuple[uuid.UUID, str], asyncio.Lock] = {}

    # -- sealing ---------------------------------------------------------------------
    def seal(self, cid: uuid.UUID, user_key: str, ts: TokenSet) -> bytes:
        doc = {
            "access_token": ts.access_token.get_secret_value(),
            "refresh_token": ts.refresh_token.get_secret_value() if ts.refresh_token else None,
            "expires_at": ts.expires_at.isoformat() if ts.expires_at else None,
            "scope": list(ts.scope),
            "obtained_at": ts.obtained_at.isoformat(),
        }
        return self.sealer.seal(json.dumps(doc).encode(), token_aad(cid, user_key))

    def open(self, row: TokenRow) -> Held:
        doc = json.loads(self.sealer.open(row["sealed"], token_aad(row["connector_id"], row["user_key"])))
        for s in (doc["access_token"], doc.get("refresh_token")):
            if s:
                register_secret(s)
        ts = TokenSet(
            access_token=SecretStr(doc["access_token"]),
            refresh_token=SecretStr(doc["refresh_token"]) if doc.get("refresh_token") else None,
            expires_at=datetime.fromisoformat(doc["expires_at"]) if doc.get("expires_at") else None,
            scope=tuple(doc.get("scope") or ()),
            obtained_at=datetime.fromisoformat(doc["obtained_at"]),
        )
        return Held(ts, row["version"], row["status"], row["issuer"])

    async def save(
        self, row: ConnectorRow, user_key: str, ts: TokenSet, server: OAuthServer, client_id: str, conn: Any = None
    ) -> TokenRow:
        return await self.store.put_token(
            row["id"],
            user_key,
            sealed=self.seal(row["id"], user_key, ts),
            expires_at=ts.expires_at,
            obtained_at=ts.obtained_at,
            scopes=" ".join(ts.scope),
            issuer=server.issuer,
            client_id=client_id,
            account=ts.account(),
            conn=conn,
        )

    # -- when to refresh -------------------------------------------------------------
    def threshold(self, ts: TokenSet) -> float:
        if ts.expires_at is None:
            return 0.0
        lifetime = (ts.expires_at - ts.obtained_at).total_seconds()
        return max(0.0, min(self.skew_s, lifetime / 2))

    def needs_refresh(self, ts: TokenSet, now: datetime | None = None) -> bool:
        return ts.expires_within(self.threshold(ts), now)

    @staticmethod
    def expired(ts: TokenSet) -> bool:
        return ts.expires_within(0)

    # -- the credential path -----------------------------------------------------------
    async def access(self, row: ConnectorRow, user_key: str, secret: dict[str, Any], *, force: bool) -> TokenSet:
        """A usable access token for (connector, user), refreshed if needed, or a typed refusal."""
        trow = await self.store.get_token(row["id"], user_key)
        if trow is None:
            raise ConsentRequired(f"connector {row['name']!r} has no connection for this caller yet")
        held = self._usable(row, trow)
        if not force and not self.needs_refresh(held.tokens):
            return held.tokens
        if held.tokens.refresh_token is None and not is_client_credentials(row):
            if self.expired(held.tokens):
                await self._mark(row, user_key, "expired", "the access token expired and there is no refresh token")
                raise CredentialExpired(
                    f"the access token of connector {row['name']!r} expired and cannot be refreshed; connect again"
                )
            return held.tokens  # nothing to refresh with; still valid
        key = (row["id"], user_key)
        async with self._locks.setdefault(key, asyncio.Lock()):
            return await self._refresh_locked(row, user_key, secret, seen=held.version, force=force)

    def _usable(self, row: ConnectorRow, trow: TokenRow) -> Held:
        if trow["status"] == "reauth_required":
            raise ReauthRequired(
                f"connector {row['name']!r} needs to be authorized again: {trow['status_reason'] or 'refused'}"
            )
        if trow["status"] == "expired":
            raise CredentialExpired(f"the connection of connector {row['name']!r} expired; connect again")
        return self.open(trow)

    async def _refresh_locked(
        self, row: ConnectorRow, user_key: str, secret: dict[str, Any], *, seen: int, force: bool
    ) -> TokenSet:
        async with self.store.token_lock(row["id"], user_key) as conn:
            trow = await self.store.get_token(row["id"], user_key, conn=conn)
            if trow is None:
                raise ConsentRequired(f"connector {row['name']!r} was disconnected for this caller")
            held = self._usable(row, trow)
            if held.version != seen or not (force or self.needs_refresh(held.tokens)):
                return held.tokens  # someone else refreshed while we waited (any replica)
            cc = is_client_credentials(row)
            if held.tokens.refresh_token is None and not cc:
                return held.tokens
            server = await self.consent.server(row)
            client = await self.consent.client(row, server, secret, create=False)
            reason: str | None = None
            try:
                if held.tokens.refresh_token is not None:
                    fresh = await refresh(self.http, server, client, held.tokens.refresh_token)
                else:  # client credentials: simply ask again (single-flight, like a refresh)
                    fresh = await client_credentials(self.http, server, client, scopes=server.scopes)
            except OAuthReauth as e:
                await self.store.set_token_status(row["id"], user_key, "reauth_required", e.message, conn=conn)
                reason = e.message
                outcome: RefreshOutcome = "reauth_required"
            except OAuthError as e:  # provider down, client refused, bad answer: keep what we hold
                reason = e.message
                outcome = "refresh_failed"
            else:
                await self.save(row, user_key, fresh, server, client.client_id, conn=conn)
                outcome = "refreshed"
        TOKEN_REFRESHES.labels(connector_label(row["name"]), outcome).inc()
        if outcome == "refreshed":
            await self.on_change(row, user_key, outcome, {"scopes": list(fresh.scope)})
            return fresh
        await self.on_change(row, user_key, outcome, {"reason": reason})
        if outcome == "reauth_required":
            raise ReauthRequired(f"connector {row['name']!r} needs to be authorized again: {reason}")
        if not self.expired(held.tokens):
            return held.tokens  # the provider is down but the token still works: use it
        raise Unavailable(f"cannot refresh the token of connector {row['name']!r} now: {reason}")

    @property
    def http(self) -> Any:
        return self.consent.http

    async def _mark(self, row: ConnectorRow, user_key: str, status: str, reason: str) -> None:
        await self.store.set_token_status(row["id"], user_key, status, reason)
        await self.on_change(row, user_key, "expired", {"reason": reason})
