"""SQL of the connectors schema. Sealed columns go in and out as bytes; nothing here opens them."""

from __future__ import annotations

import builtins
import hashlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg

__all__ = ["ConnectorRow", "Store", "TokenRow"]

ConnectorRow: TypeAlias = asyncpg.Record
TokenRow: TypeAlias = asyncpg.Record
Executor: TypeAlias = "asyncpg.Pool | asyncpg.Connection"

_COLUMNS = (
    "id, name, url, transport, description, scope, auth_type, auth_config, secret_sealed, secret_expires_at,"
    " status, status_reason, config_version, timeout_s, created_at, updated_at, last_used_at, oauth_server,"
    " step_up_scopes"
)
_TOKEN_COLUMNS = (
    "connector_id, user_key, sealed, expires_at, scopes, version, status, status_reason, updated_at,"
    " obtained_at, issuer, client_id, account"
)
# what `status` says, except that an active connector whose static credential has passed its
# expiry is `expired` (nothing flips the stored status at that instant; views.render agrees)
_EFFECTIVE_STATUS = "(CASE WHEN status = 'active' AND secret_expires_at <= now() THEN 'expired' ELSE status END)"


def lock_key(*parts: object) -> int:
    """A signed 64-bit advisory-lock key for a tuple of identities."""
    raw = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.sha256(b"warden.connectors|" + raw).digest()[:8], "big", signed=True)


class Store:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def insert(
        self,
        *,
        name: str,
        url: str,
        transport: str,
        description: str,
        scope: str,
        auth_type: str,
        auth_config: dict[str, Any],
        secret_sealed_for: Any,
        secret_expires_at: datetime | None,
        status: str,
        timeout_s: float,
    ) -> ConnectorRow:
        """Insert a connector; `secret_sealed_for(id)` seals the secret bound to the new id."""
        cid = uuid.uuid4()
        sealed = secret_sealed_for(cid)
        row = await self.pool.fetchrow(
            f"INSERT INTO connectors (id, name, url, transport, description, scope, auth_type, auth_config,"
            f" secret_sealed, secret_expires_at, status, timeout_s)"
            f" VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)"
            f" ON CONFLICT (name) DO NOTHING RETURNING {_COLUMNS}",
            cid,
            name,
            url,
            transport,
            description,
            scope,
            auth_type,
            auth_config,
            sealed,
            secret_expires_at,
            status,
            timeout_s,
        )
        return row

    async def get(self, name: str) -> ConnectorRow | None:
        return await self.pool.fetchrow(f"SELECT {_COLUMNS} FROM connectors WHERE name = $1", name)

    async def get_by_id(self, cid: uuid.UUID) -> ConnectorRow | None:
        return await self.pool.fetchrow(f"SELECT {_COLUMNS} FROM connectors WHERE id = $1", cid)

    async def list(self, statuses: list[str] | None = None, *, or_step_up: bool = False) -> list[ConnectorRow]:
        """Connectors in these statuses (all when None); `or_step_up` adds those waiting for
        an admin to grant more scopes. A static credential past its expiry counts as `expired`."""
        if statuses:
            return await self.pool.fetch(
                f"SELECT {_COLUMNS} FROM connectors WHERE {_EFFECTIVE_STATUS} = ANY($1::text[])"
                " OR ($2 AND cardinality(step_up_scopes) > 0) ORDER BY name",
                statuses,
                or_step_up,
            )
        return await self.pool.fetch(f"SELECT {_COLUMNS} FROM connectors ORDER BY name")

    async def update(self, name: str, fields: dict[str, Any], bump_version: bool) -> ConnectorRow | None:
        if not fields and not bump_version:
            return await self.get(name)
        sets, args = [], []
        for i, (k, v) in enumerate(fields.items(), start=2):
            sets.append(f"{k} = ${i}")
            args.append(v)
        sets.append("updated_at = now()")
        if bump_version:
            sets.append("config_version = config_version + 1")
        return await self.pool.fetchrow(
            f"UPDATE connectors SET {', '.join(sets)} WHERE name = $1 RETURNING {_COLUMNS}", name, *args
        )

    async def set_status(
        self, cid: uuid.UUID, status: str, reason: str | None, *, conn: Executor | None = None
    ) -> ConnectorRow | None:
        """Set the status; returns the row only when it changed (so callers emit once)."""
        return await (conn or self.pool).fetchrow(
            f"UPDATE connectors SET status = $2, status_reason = $3, updated_at = now()"
            f" WHERE id = $1 AND (status IS DISTINCT FROM $2 OR status_reason IS DISTINCT FROM $3)"
            f" RETURNING {_COLUMNS}",
            cid,
            status,
            reason,
        )

    async def set_step_up(self, cid: uuid.UUID, scopes: builtins.list[str]) -> ConnectorRow | None:
        """Record (or clear, with []) the scopes the organization's next consent must ask for;
        returns the row only when it changed."""
        return await self.pool.fetchrow(
            f"UPDATE connectors SET step_up_scopes = $2, updated_at = now()"
            f" WHERE id = $1 AND step_up_scopes IS DISTINCT FROM $2::text[] RETURNING {_COLUMNS}",
            cid,
            scopes,
        )

    async def set_consent_failure(self, cid: uuid.UUID, reason: str | None) -> None:
        """Record the organization's refused consent (now), or clear it (None) when one succeeded."""
        await self.pool.execute(
            "UPDATE connectors SET consent_failed_reason = $2,"
            " consent_failed_at = CASE WHEN $2::text IS NULL THEN NULL ELSE clock_timestamp() END WHERE id = $1",
            cid,
            reason,
        )

    async def consent_failure(self, cid: uuid.UUID) -> asyncpg.Record | None:
        """(consent_failed_at, consent_failed_reason) of the connector, when a consent was refused."""
        return await self.pool.fetchrow(
            "SELECT consent_failed_at, consent_failed_reason FROM connectors"
            " WHERE id = $1 AND consent_failed_at IS NOT NULL",
            cid,
        )

    async def set_oauth_server(self, cid: uuid.UUID, server: dict[str, Any] | None) -> None:
        await self.pool.execute("UPDATE connectors SET oauth_server = $2 WHERE id = $1", cid, server)

    async def touch_by_name(self, name: str) -> None:
        await self.pool.execute("UPDATE connectors SET last_used_at = now() WHERE name = $1", name)

    async def delete(self, name: str) -> bool:
        res = await self.pool.execute("DELETE FROM connectors WHERE name = $1", name)
        return res.endswith(" 1")

    # -- tokens --------------------------------------------------------------------
    @asynccontextmanager
    async def token_lock(self, cid: uuid.UUID, user_key: str) -> AsyncIterator[asyncpg.Connection]:
        """A transaction holding the (connector, user) token lock: one refresh at a time across
        every replica. The lock goes with the transaction (commit or rollback)."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_key("token", cid, user_key))
            yield conn

    @asynccontextmanager
    async def client_lock(self, cid: uuid.UUID) -> AsyncIterator[asyncpg.Connection]:
        """One client registration per connector at a time (a second DCR is a second client)."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_key("client", cid))
            yield conn

    async def get_token(self, cid: uuid.UUID, user_key: str, *, conn: Executor | None = None) -> TokenRow | None:
        return await (conn or self.pool).fetchrow(
            f"SELECT {_TOKEN_COLUMNS} FROM tokens WHERE connector_id = $1 AND user_key = $2", cid, user_key
        )

    async def list_tokens(self, cid: uuid.UUID) -> builtins.list[TokenRow]:
        return await self.pool.fetch(f"SELECT {_TOKEN_COLUMNS} FROM tokens WHERE connector_id = $1", cid)

    async def put_token(
        self,
        cid: uuid.UUID,
        user_key: str,
        *,
        sealed: bytes,
        expires_at: datetime | None,
        obtained_at: datetime,
        scopes: str,
        issuer: str,
        client_id: str,
        account: str | None = None,
        conn: Executor | None = None,
    ) -> TokenRow:
        """Store a token row; `account` (the upstream account) is kept across refreshes that
        do not name one."""
        return await (conn or self.pool).fetchrow(
            "INSERT INTO tokens (connector_id, user_key, sealed, expires_at, obtained_at, scopes, issuer, client_id,"
            " account, status, status_reason, version, updated_at)"
            " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,'active',NULL,1,now())"
            " ON CONFLICT (connector_id, user_key) DO UPDATE SET sealed = EXCLUDED.sealed,"
            " expires_at = EXCLUDED.expires_at, obtained_at = EXCLUDED.obtained_at, scopes = EXCLUDED.scopes,"
            " issuer = EXCLUDED.issuer, client_id = EXCLUDED.client_id,"
            " account = COALESCE(EXCLUDED.account, tokens.account), status = 'active', status_reason = NULL,"
            f" version = tokens.version + 1, updated_at = now() RETURNING {_TOKEN_COLUMNS}",
            cid,
            user_key,
            sealed,
            expires_at,
            obtained_at,
            scopes,
            issuer,
            client_id,
            account,
        )

    async def connection_users(self, cid: uuid.UUID) -> builtins.list[str]:
        """Every user with a token row or a pending consent for a per-user connector."""
        rows = await self.pool.fetch(
            "SELECT user_key FROM tokens WHERE connector_id = $1 AND user_key <> ''"
            " UNION SELECT user_key FROM oauth_flows WHERE connector_id = $1 AND user_key <> ''"
            " AND expires_at > now() ORDER BY 1",
            cid,
        )
        return [r["user_key"] for r in rows]

    async def set_token_status(
        self, cid: uuid.UUID, user_key: str, status: str, reason: str | None, *, conn: Executor | None = None
    ) -> None:
        await (conn or self.pool).execute(
            "UPDATE tokens SET status = $3, status_reason = $4, version = version + 1, updated_at = now()"
            " WHERE connector_id = $1 AND user_key = $2",
            cid,
            user_key,
            status,
            reason,
        )

    async def purge_tokens(self, cid: uuid.UUID, user_key: str | None = None) -> builtins.list[TokenRow]:
        if user_key is None:
            return await self.pool.fetch(f"DELETE FROM tokens WHERE connector_id = $1 RETURNING {_TOKEN_COLUMNS}", cid)
        return await self.pool.fetch(
            f"DELETE FROM tokens WHERE connector_id = $1 AND user_key = $2 RETURNING {_TOKEN_COLUMNS}", cid, user_key
        )

    # -- OAuth clients ---------------------------------------------------------------
    async def get_client(self, cid: uuid.UUID, issuer: str, *, conn: Executor | None = None) -> asyncpg.Record | None:
        return await (conn or self.pool).fetchrow(
            "SELECT client_id, auth_method, source, sealed FROM oauth_clients WHERE connector_id = $1 AND issuer = $2",
            cid,
            issuer,
        )

    async def put_client(
        self,
        cid: uuid.UUID,
        issuer: str,
        *,
        client_id: str,
        auth_method: str,
        source: str,
        sealed: bytes,
        conn: Executor | None = None,
    ) -> None:
        await (conn or self.pool).execute(
            "INSERT INTO oauth_clients (connector_id, issuer, client_id, auth_method, source, sealed)"
            " VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT (connector_id, issuer) DO UPDATE SET"
            " client_id = EXCLUDED.client_id, auth_method = EXCLUDED.auth_method, source = EXCLUDED.source,"
            " sealed = EXCLUDED.sealed, created_at = now()",
            cid,
            issuer,
            client_id,
            auth_method,
            source,
            sealed,
        )

    async def drop_clients(self, cid: uuid.UUID) -> None:
        await self.pool.execute("DELETE FROM oauth_clients WHERE connector_id = $1", cid)

    # -- pending consent flows ---------------------------------------------------------
    async def add_flow(
        self, nonce: str, cid: uuid.UUID, user_key: str, expires_at: datetime, authorize_url: str | None = None
    ) -> None:
        await self.pool.execute("DELETE FROM oauth_flows WHERE expires_at < now() - interval '1 hour'")
        await self.pool.execute(
            "INSERT INTO oauth_flows (nonce, connector_id, user_key, expires_at, authorize_url)"
            " VALUES ($1,$2,$3,$4,$5)",
            nonce,
            cid,
            user_key,
            expires_at,
            authorize_url,
        )

    async def open_flow(self, nonce: str) -> tuple[asyncpg.Record | None, bool]:
        """The start URL opened: (the flow, whether this is its first opening). The first
        opening is claimed atomically, so only one browser ever gets the flow's cookie."""
        first = await self.pool.fetchrow(
            "UPDATE oauth_flows SET opened_at = now() WHERE nonce = $1 AND expires_at > now()"
            " AND opened_at IS NULL AND authorize_url IS NOT NULL"
            " RETURNING connector_id, user_key, authorize_url, expires_at",
            nonce,
        )
        if first is not None:
            return first, True
        again = await self.pool.fetchrow(
            "SELECT connector_id, user_key, authorize_url, expires_at FROM oauth_flows"
            " WHERE nonce = $1 AND expires_at > now() AND authorize_url IS NOT NULL",
            nonce,
        )
        return again, False

    async def consume_flow(self, nonce: str) -> asyncpg.Record | None:
        """The single use of a state: whichever replica deletes the row first wins."""
        return await self.pool.fetchrow(
            "DELETE FROM oauth_flows WHERE nonce = $1 AND expires_at > now() RETURNING connector_id, user_key", nonce
        )

    async def pending_flow(self, cid: uuid.UUID, user_key: str) -> bool:
        return bool(
            await self.pool.fetchval(
                "SELECT EXISTS (SELECT 1 FROM oauth_flows WHERE connector_id = $1 AND user_key = $2"
                " AND expires_at > now())",
                cid,
                user_key,
            )
        )

    async def drop_flows(self, cid: uuid.UUID, user_key: str | None = None) -> None:
        if user_key is None:
            await self.pool.execute("DELETE FROM oauth_flows WHERE connector_id = $1", cid)
        else:
            await self.pool.execute("DELETE FROM oauth_flows WHERE connector_id = $1 AND user_key = $2", cid, user_key)
