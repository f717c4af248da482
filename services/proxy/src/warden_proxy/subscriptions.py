"""Resource subscriptions through the gateway.

One upstream subscription per (connector, user, upstream URI), shared by every agent session
that asked for it; the upstream's `notifications/resources/updated` goes to each of them,
under the URI that session subscribed with. The last unsubscribe ends the upstream one. A
session that is gone is dropped the first time a notification cannot reach it. The number
of subscribed sessions is capped; past it a subscribe is refused.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import mcp_types as types
from mcp.server.session import ServerSession
from mcp.shared.exceptions import MCPError

__all__ = ["Subscriptions"]

log = logging.getLogger(__name__)

Key = tuple[str, str, str]  # (connector, user, upstream uri)


class Subscriptions:
    def __init__(self, max_subscribers: int = 10_000) -> None:
        self.max_subscribers = max_subscribers
        self._subs: dict[Key, dict[str, tuple[ServerSession, str]]] = {}
        self._count = 0
        self._lock = asyncio.Lock()

    def __contains__(self, key: Key) -> bool:
        return key in self._subs

    async def add(
        self, key: Key, who: str, session: ServerSession, shown: str, upstream: Callable[[], Awaitable[Any]]
    ) -> None:
        """Subscribe `who` (an agent session); `upstream()` subscribes upstream, once per key."""
        async with self._lock:
            subs = self._subs.get(key)
            if subs is None or who not in subs:
                if self._count >= self.max_subscribers:
                    raise MCPError(types.INTERNAL_ERROR, "too many resource subscriptions on this gateway")
            if subs is None:
                await upstream()
                subs = self._subs[key] = {}
            if who not in subs:
                self._count += 1
            subs[who] = (session, shown)

    async def remove(self, key: Key, who: str, upstream: Callable[[], Awaitable[Any]]) -> None:
        """Unsubscribe `who`; the last one out unsubscribes upstream."""
        async with self._lock:
            subs = self._subs.get(key)
            if subs is None or subs.pop(who, None) is None:
                return
            self._count -= 1
            if not subs:
                del self._subs[key]
                await upstream()

    async def updated(self, connector: str, user: str, uri: str) -> None:
        """The upstream says `uri` changed: tell every session subscribed to it."""
        subs = self._subs.get((connector, user, uri))
        for who, (session, shown) in list((subs or {}).items()):
            try:
                await session.send_resource_updated(shown)
            except Exception:  # noqa: BLE001 - that session is gone: forget it
                log.debug("dropping a subscriber that cannot be reached", exc_info=True)
                if subs is not None and subs.pop(who, None) is not None:
                    self._count -= 1
