"""tools/list for agents, shared by every replica.

- A tool reaches the agent as its upstream declared it (title, annotations, outputSchema,
  icons, `_meta`), with the registry's read/write fact in readOnlyHint/destructiveHint
  when an admin changed it (the registry builds that view).
- `Unlocks`: the deferred tools a client found through `tool_search`, in Postgres, so every
  replica lists them for that client: per MCP session, or per agent key for stateless
  clients. At most `MAX_UNLOCKED` per client, each for `UNLOCK_TTL` after its last search.
  An unlock only lists a tool: a deferred tool may be called by name before any search, by
  every caller whose grant allows it (deferral saves context, it is not a permission).
- `ListWatch`: the sessions that were given a list and a digest of it. A registry event
  (grant, revoke, hold, disable, re-approve; it reaches every replica) wakes it; it lists
  again for each session and sends `notifications/tools/list_changed` to those whose list
  is not what they were given. Stateless (2026-07-28) requests have no channel to send on.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import weakref
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import asyncpg
import mcp_types as types
from pydantic import ValidationError
from warden_common.contracts import ToolView

__all__ = ["MAX_UNLOCKED", "UNLOCK_TTL", "ListWatch", "Unlocks", "as_mcp_tool", "digest"]

log = logging.getLogger(__name__)
MAX_UNLOCKED = 200
UNLOCK_TTL = timedelta(hours=24)
_MAX_WATCHED = 10_000
_SEND_TIMEOUT_S = 5.0
_SECOND_LOOK_S = 1.0


def as_mcp_tool(v: ToolView) -> types.Tool:
    """The wire tool; metadata that does not validate is left out, never the tool."""
    base: dict[str, Any] = {"name": v.name, "description": v.description, "inputSchema": v.input_schema}
    extra = {
        "title": v.title,
        "outputSchema": v.output_schema,
        "annotations": v.annotations,
        "icons": v.icons,
        "_meta": v.meta,
    }
    try:
        return types.Tool.model_validate(base | {k: x for k, x in extra.items() if x is not None})
    except ValidationError:
        log.debug("metadata of tool %s left out: it does not validate", v.name)
        return types.Tool.model_validate(base)


def digest(tools: list[types.Tool]) -> str:
    doc = [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in tools]
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


class Unlocks:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def add(self, client: str, owner: str, profile: str, names: set[str]) -> bool:
        """Unlock `names` for the client; True when one of them was not unlocked yet."""
        async with self.pool.acquire() as conn, conn.transaction():
            new = await conn.fetch(
                "INSERT INTO tool_unlocks (client, owner, profile, tool, expires_at)"
                " SELECT $1, $2, $3, t, now() + $5::interval FROM unnest($4::text[]) t"
                " ON CONFLICT (client, owner, profile, tool) DO UPDATE SET expires_at = EXCLUDED.expires_at"
                " RETURNING (xmax = 0) AS inserted",
                client,
                owner,
                profile,
                sorted(names),
                UNLOCK_TTL,
            )
            await conn.execute(
                "DELETE FROM tool_unlocks WHERE client = $1 AND owner = $2 AND profile = $3 AND tool NOT IN"
                " (SELECT tool FROM tool_unlocks WHERE client = $1 AND owner = $2 AND profile = $3"
                " ORDER BY expires_at DESC, tool LIMIT $4)",
                client,
                owner,
                profile,
                MAX_UNLOCKED,
            )
            await conn.execute("DELETE FROM tool_unlocks WHERE expires_at < now()")
        return any(r["inserted"] for r in new)

    async def of(self, client: str, owner: str, profile: str) -> set[str]:
        rows = await self.pool.fetch(
            "SELECT tool FROM tool_unlocks WHERE client = $1 AND owner = $2 AND profile = $3 AND expires_at > now()",
            client,
            owner,
            profile,
        )
        return {r["tool"] for r in rows}


class _Watched:
    __slots__ = ("digest", "lister")

    def __init__(self, lister: Callable[[bool], Awaitable[list[types.Tool]]], digest: str) -> None:
        self.lister = lister
        self.digest = digest


class ListWatch:
    def __init__(self) -> None:
        # by the SDK's connection (one per MCP session; a request's `ServerSession` is made
        # per request): it goes from here when the SDK drops the closed session
        self._sessions: weakref.WeakKeyDictionary[Any, _Watched] = weakref.WeakKeyDictionary()
        self._poked = asyncio.Event()

    def seen(
        self, session: Any, lister: Callable[[bool], Awaitable[list[types.Tool]]], tools: list[types.Tool]
    ) -> None:
        """The session was given `tools`; `lister(fresh)` lists for it again."""
        # the connection is private in the SDK; the request's session works too, while it lives
        connection = getattr(session, "_connection", None) or session
        if connection not in self._sessions and len(self._sessions) >= _MAX_WATCHED:
            return  # bounded: a session past the bound is not told of changes
        self._sessions[connection] = _Watched(lister, digest(tools))

    def poke(self) -> None:
        self._poked.set()

    async def run(self) -> None:
        """Owned by the lifespan. After a wake-up, one pass now and one a moment later (a
        registry replica that had not yet seen the event answered the first)."""
        while True:
            await self._poked.wait()
            self._poked.clear()
            await self.check()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poked.wait(), _SECOND_LOOK_S)
                continue
            await self.check()

    async def check(self) -> None:
        for session, w in list(self._sessions.items()):
            try:
                tools = await w.lister(True)
            except Exception:  # noqa: BLE001 - one session's listing must not stop the others
                log.debug("listing again for a session failed", exc_info=True)
                continue
            d = digest(tools)
            if d == w.digest:
                continue
            w.digest = d
            try:
                await asyncio.wait_for(session.send_tool_list_changed(), _SEND_TIMEOUT_S)
            except Exception:  # noqa: BLE001 - the session is gone: stop watching it
                log.debug("list_changed not delivered; the session is no longer watched", exc_info=True)
                self._sessions.pop(session, None)
