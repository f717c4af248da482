"""A connector removed in connectors takes its tools and the grants on them along (issue 16,
item 0c): a connector created later under the same name, at any server, is another connector
(another id) and inherits nothing.

On `connector.removed` (a durable JetStream consumer, so a registry that was down catches up;
see handlers.py), and whenever a listing answers for another id than the one a connector's
tools were registered against (the event was missed), the registry

- unregisters the tools of that connector id registered before the removal (and those with
  no id recorded: registered before ids were), each as a `tool.unregistered` event with
  reason "connector removed", kept in the audit;
- drops the connector's settings (alias, auto-approve default, cache) once no tool of that
  name is left, so a new connector starts from the defaults;
- revokes every grant that matches no tool left and either matched a removed tool or names
  the connector's namespace (`<alias>__…` before any wildcard, so `notion__*` and
  `notion__get_page` both go): a `grant.revoked` event each, reason "connector removed".
  A broader pattern that still matches other connectors' tools (`*`, `*__search`) stays: it
  is a grant on the catalog as a whole, and a new connector's tools enter the catalog only
  when an admin registers them.

A mixin of `Registry` (service.py). No FastAPI, no NATS.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from warden_common.contracts import EventRefs, EventType

from warden_registry.access import Grant
from warden_registry.catalog import SEPARATOR
from warden_registry.store import Store

__all__ = ["REASON", "Removal", "doomed_grants"]

log = logging.getLogger(__name__)
REASON = "connector removed"
_WILDCARDS = "*?["


def _literal_prefix(pattern: str) -> str:
    cut = min((i for i in (pattern.find(c) for c in _WILDCARDS) if i >= 0), default=len(pattern))
    return pattern[:cut]


def doomed_grants(
    gone: Sequence[str], grants: Sequence[Any], left: Sequence[str], aliases: set[str]
) -> list[uuid.UUID]:
    """The grants a removal revokes (see the module docstring). Pure: tested without a database."""
    gone_set, left_set = set(gone), set(left)
    spaces = tuple(f"{a}{SEPARATOR}" for a in aliases)
    out = []
    for g in grants:
        rule = Grant.of(g["tool"], g["read_only"])
        if any(rule.matches(n) for n in left_set):
            continue
        if any(rule.matches(n) for n in gone_set) or (spaces and _literal_prefix(g["tool"]).startswith(spaces)):
            out.append(g["id"])
    return out


class Removal:
    store: Store

    if TYPE_CHECKING:  # provided by Registry

        def invalidate(self) -> None: ...

        def _emit(self, type: EventType, actor: str | None, refs: EventRefs, **data: Any) -> None: ...

        def _emit_each(
            self, type: EventType, actor: str | None, connector: str, items: Sequence[tuple[str, dict[str, Any]]]
        ) -> None: ...

    async def connector_removed(
        self,
        connector: str,
        connector_id: str | None,
        removed_at: datetime | None = None,
        *,
        removed_by: str | None = None,
        why: str = REASON,
    ) -> tuple[list[str], list[str]]:
        """Unregister a removed connector's tools and revoke the grants on them; idempotent (a
        redelivered event finds nothing left). Answers the tool names and grant ids removed."""
        at = removed_at or datetime.now(UTC)

        def doomed(gone: list[Any], grants: list[Any], left: list[str], aliases: set[str]) -> list[uuid.UUID]:
            return doomed_grants([r["name"] for r in gone], grants, left, aliases)

        gone, revoked = await self.store.remove_connector(connector, connector_id, at, doomed)
        if not gone and not revoked:
            return [], []
        self.invalidate()
        data: dict[str, Any] = {"reason": why, "connector_id": connector_id}
        if removed_by:
            data["removed_by"] = removed_by
        self._emit_each(
            EventType.tool_unregistered,
            None,
            connector,
            [(r["name"], {**data, "upstream_name": r["upstream_name"]}) for r in gone],
        )
        for g in revoked:
            self._emit(
                EventType.grant_revoked,
                None,
                EventRefs(profile=g["profile"], tool=g["tool"], connector=connector),
                grant_id=str(g["id"]),
                read_only=g["read_only"],
                **data,
            )
        log.info(
            "connector %s (%s) removed: %d tools unregistered, %d grants revoked",
            connector,
            why,
            len(gone),
            len(revoked),
        )
        return [r["name"] for r in gone], [str(g["id"]) for g in revoked]

    async def check_connector_id(self, connector: str, listed_id: str | None, rows: Sequence[Any]) -> bool:
        """A listing answered for connector id `listed_id`: tools registered against another
        id belong to a connector that was removed (its event missed): remove them now. Tools
        with no id recorded adopt this one. True when something was removed."""
        if listed_id is None:
            return False
        stale = sorted({r["connector_id"] for r in rows if r["connector_id"] and r["connector_id"] != listed_id})
        removed = False
        for old in stale:
            tools, grants = await self.connector_removed(connector, old, why=REASON)
            removed = removed or bool(tools or grants)
        if any(r["connector_id"] is None for r in rows) and await self.store.adopt_connector_id(connector, listed_id):
            self.invalidate()
        return removed
