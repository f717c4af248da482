"""Background refreshes, run by the lifespan's task group.

- On request (an upstream reported `tools/list_changed`): connectors are queued and refreshed
  one after another; a burst of requests for one connector becomes one refresh.
- On a period: every connector with registered tools whose last refresh (by any replica) is
  older than the period.
"""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import UTC, datetime, timedelta

from warden_common.contracts.credentials import NAME_PATTERN

from warden_registry.errors import WardenError
from warden_registry.service import Registry

__all__ = ["Refresher"]

log = logging.getLogger(__name__)
_NAME = re.compile(NAME_PATTERN)


class Refresher:
    def __init__(self, registry: Registry, period_s: float) -> None:
        self.registry = registry
        self.period_s = period_s
        self._pending: dict[str, None] = {}
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()

    def request(self, connector: str) -> None:
        if not _NAME.match(connector):
            log.warning("ignoring a refresh request for a malformed connector name")
            return
        self._pending[connector] = None
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    async def _refresh(self, connector: str) -> None:
        try:
            out = await self.registry.refresh(connector, None)
        except WardenError as e:
            log.warning("refresh of %s failed: %s", connector, e.message)
            return
        except Exception:  # noqa: BLE001 - top of a background job: log it and keep serving
            log.exception("refresh of %s failed", connector)
            return
        if out.drifted or out.missing:
            log.info("refresh of %s: %d drifted, %d missing", connector, len(out.drifted), len(out.missing))

    async def run_requests(self) -> None:
        while not self._stop.is_set():
            await self._wake.wait()
            self._wake.clear()
            while self._pending and not self._stop.is_set():
                connector = next(iter(self._pending))
                del self._pending[connector]
                await self._refresh(connector)

    async def run_periodic(self) -> None:
        if self.period_s <= 0:
            return
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=self.period_s)
                return
            except TimeoutError:
                pass
            await self.refresh_due()

    async def refresh_due(self) -> None:
        """Refresh every connector not refreshed (by any replica) within the period."""
        due_before = datetime.now(UTC) - timedelta(seconds=self.period_s * 0.9)
        try:
            connectors = await self.registry.store.connectors()
        except Exception:  # noqa: BLE001 - top of a background job: log it and try next period
            log.exception("periodic refresh: cannot read connectors")
            return
        for c in connectors:
            if self._stop.is_set():
                return
            if c["refreshed_at"] is None or c["refreshed_at"] < due_before:
                await self._refresh(c["connector"])
