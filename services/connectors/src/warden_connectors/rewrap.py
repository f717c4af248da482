"""KEK rotation: re-wrap every sealed record's data key under the active (first) key.

Sealed columns: `connectors.secret_sealed`, `tokens.sealed`, `oauth_clients.sealed`. A record's
key id is in its header (warden_common.crypto wire format), so Postgres can count the records
per key without opening any. Re-wrapping goes in batches and is resumable: each batch takes
records not yet under the active key, and writes each back only if it is unchanged
(compare-and-set), so a token refreshed meanwhile (already sealed under the active key) is
left alone. The data itself is never re-encrypted and never leaves this process.

The SQL lives here, beside the logic, because it touches every sealed column of the schema.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
from warden_common.crypto import Sealer
from warden_common.errors import SealError

from warden_connectors.consent import client_aad
from warden_connectors.specs import secret_aad
from warden_connectors.tokens import token_aad

__all__ = ["Rewrapper"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Sealed:
    table: str
    column: str
    keys: tuple[str, ...]
    aad: Callable[[asyncpg.Record], str]


_SEALED = (
    _Sealed("connectors", "secret_sealed", ("id",), lambda r: secret_aad(r["id"])),
    _Sealed("tokens", "sealed", ("connector_id", "user_key"), lambda r: token_aad(r["connector_id"], r["user_key"])),
    _Sealed(
        "oauth_clients", "sealed", ("connector_id", "issuer"), lambda r: client_aad(r["connector_id"], r["issuer"])
    ),
)


def _kid(column: str) -> str:
    """The key id in a sealed value's header: b"WS1" | len(kid) | kid | ..."""
    return f"convert_from(substring({column} from 5 for get_byte({column}, 3)), 'UTF8')"


class Rewrapper:
    def __init__(self, pool: asyncpg.Pool, sealer: Sealer) -> None:
        self.pool = pool
        self.sealer = sealer
        self.configured = sealer.key_ids  # every configured key id, the active one first

    async def status(self) -> dict[str, Any]:
        """How many sealed records each key holds; how many are still under an old key, and how
        many under a key that is no longer configured (they cannot be opened)."""
        by_key: dict[str, int] = {}
        for s in _SEALED:
            rows = await self.pool.fetch(
                f"SELECT {_kid(s.column)} AS kid, count(*) AS n FROM {s.table} WHERE {s.column} IS NOT NULL GROUP BY 1"
            )
            for r in rows:
                by_key[r["kid"]] = by_key.get(r["kid"], 0) + int(r["n"])
        active = self.sealer.active_kid
        old = sum(n for k, n in by_key.items() if k != active and k in self.configured)
        unknown = {k: n for k, n in by_key.items() if k not in self.configured}
        return {
            "active_key": active,
            "configured_keys": self.configured,
            "records": sum(by_key.values()),
            "by_key": by_key,
            "old_key_records": old,
            "unconfigured_key_records": sum(unknown.values()),
            "unconfigured_keys": sorted(unknown),
            "done": old == 0,
        }

    async def batch(self, limit: int) -> dict[str, Any]:
        """Re-wrap up to `limit` records under the active key; the status after it."""
        active = self.sealer.active_kid
        old = [k for k in self.configured if k != active]
        rewrapped = failed = skipped = 0
        for s in _SEALED:
            if rewrapped + failed >= limit or not old:
                break
            cols = ", ".join(s.keys)
            rows = await self.pool.fetch(
                f"SELECT {cols}, {s.column} AS sealed FROM {s.table}"
                f" WHERE {s.column} IS NOT NULL AND {_kid(s.column)} = ANY($1::text[])"
                f" ORDER BY {cols} LIMIT $2",
                old,
                limit - rewrapped - failed,
            )
            for r in rows:
                try:
                    new = self.sealer.rewrap(r["sealed"], s.aad(r))
                except SealError as e:
                    failed += 1
                    log.warning("rewrap: a record in %s does not open: %s", s.table, e)
                    continue
                where = " AND ".join(f"{k} = ${i + 3}" for i, k in enumerate(s.keys))
                done = await self.pool.execute(
                    f"UPDATE {s.table} SET {s.column} = $1 WHERE {s.column} = $2 AND {where}",
                    new,
                    r["sealed"],
                    *(r[k] for k in s.keys),
                )
                if done == "UPDATE 1":
                    rewrapped += 1
                else:
                    skipped += 1  # changed meanwhile (re-sealed under the active key, or deleted)
        return {"rewrapped": rewrapped, "failed": failed, "changed_meanwhile": skipped, **await self.status()}
