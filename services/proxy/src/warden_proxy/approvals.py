"""Held calls: a tool that is not auto-approved waits here for an admin's decision.

The approval is a row (so a restart loses nothing); the decision is published as an
event, and every proxy replica wakes the caller it holds, whichever replica took the
decision. No decision before `expires_at` expires the approval and fails the call.

`watch()` is how the live queue (`GET /v1/approvals/stream`) learns that the queue changed:
a call held or decided here, or (by its event) at another replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from pydantic import BaseModel, Field
from warden_common.bus import Bus
from warden_common.contracts import Actor, ErrorCode, EventRefs, EventType
from warden_common.errors import Conflict, NotFound, Unavailable, WardenError
from warden_common.metrics import APPROVAL_WAIT, error_outcome, timed

__all__ = [
    "ApprovalDecision",
    "ApprovalRejected",
    "ApprovalTimeout",
    "Approvals",
    "ApprovalView",
    "AskApproval",
    "TooManyWatchers",
]

log = logging.getLogger(__name__)

# ask the user at the calling client: (tool, arguments) -> (approve, reason), or None for no answer
AskApproval = Callable[[str, dict[str, Any]], Awaitable[tuple[bool, str | None] | None]]
# does the call's authority (grant, tool enabled, not held for drift) still hold? None when it
# does, else the reason it does not (asked again whenever the registry changes)
StillAllowed = Callable[[], Awaitable[str | None]]
# progress to the waiting caller: (progress, total, message)
Progress = Callable[[float, float | None, str | None], Awaitable[None]]
# a waiting caller hears from us at least this often (clients time out requests after 60 s)
PROGRESS_EVERY_S = 10.0


class ApprovalRejected(WardenError):
    code = ErrorCode.approval_rejected
    http_status = 403


class ApprovalTimeout(WardenError):
    code = ErrorCode.approval_timeout
    http_status = 504


class TooManyWatchers(Unavailable):
    """Too many live queues open at this replica (each holds a connection and wakes on every change)."""


class ApprovalDecision(BaseModel):
    reason: str = Field(default="", max_length=1000)


class ApprovalView(BaseModel):
    id: str
    call_id: str
    tool: str
    profile: str
    actor: str
    arguments: dict[str, Any]
    status: str
    reason: str | None
    # who may decide it: admin, user (the end user the call acts for, at the client) or any
    approver: str = "admin"
    # the identity that decided (an admin's name, a user, an agent key's prefix) and its kind
    decided_by: str | None
    decided_by_kind: str | None = None
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None


def _view(r: asyncpg.Record) -> ApprovalView:
    return ApprovalView(
        id=str(r["id"]),
        call_id=r["call_id"],
        tool=r["tool"],
        profile=r["profile"],
        actor=r["actor"],
        arguments=dict(r["arguments"]),
        status=r["status"],
        reason=r["reason"],
        approver=r["approver"],
        decided_by=r["decided_by"],
        decided_by_kind=r["decided_by_kind"],
        created_at=r["created_at"],
        expires_at=r["expires_at"],
        decided_at=r["decided_at"],
    )


_COLS = (
    "id, call_id, tool, profile, actor, arguments, status, reason, approver, decided_by, decided_by_kind,"
    " created_at, expires_at, decided_at"
)


class Approvals:
    def __init__(self, pool: asyncpg.Pool, bus: Bus, timeout_s: float) -> None:
        self.pool = pool
        self.bus = bus
        self.timeout_s = timeout_s
        self._waiters: dict[str, asyncio.Event] = {}
        self.registry_generation = 0
        self._watchers: set[asyncio.Event] = set()

    # live queues (`GET /v1/approvals/stream`) open at once on one replica
    MAX_WATCHERS = 200

    def check_room(self) -> None:
        """Refuse one more live queue beyond `MAX_WATCHERS` (each holds a connection)."""
        if len(self._watchers) >= self.MAX_WATCHERS:
            raise TooManyWatchers(
                f"{self.MAX_WATCHERS} live approval queues are open at this proxy; poll GET /v1/approvals instead"
            )

    @contextlib.contextmanager
    def watch(self) -> Iterator[asyncio.Event]:
        """An event set whenever the queue may have changed, for as long as the block runs."""
        ev = asyncio.Event()
        self._watchers.add(ev)
        try:
            yield ev
        finally:
            self._watchers.discard(ev)

    def changed(self) -> None:
        """The queue changed: a call held or decided here, or an approval event from any replica."""
        for ev in self._watchers:
            ev.set()

    @timed(APPROVAL_WAIT, ok=lambda _: "approved", error=error_outcome)
    async def hold(
        self,
        *,
        call_key: str,
        call_id: str,
        tool: str,
        profile: str,
        actor: Actor,
        arguments: dict[str, Any],
        refs: EventRefs,
        ask: AskApproval | None = None,
        asker: Actor | None = None,
        still_allowed: StillAllowed | None = None,
        approver: str = "admin",
        progress: Progress | None = None,
        abandon_on_cancel: bool = True,
        caller_wait_s: float | None = None,
    ) -> None:
        """Wait for a decision on this call; return when approved, raise otherwise.
        With `ask` (the calling client can show a form), the user at the client is asked too:
        the first decision wins, theirs or an admin's through the API. With `still_allowed`,
        a registry change that takes the call's authority away (grant deleted, tool disabled
        or held for drift) ends the wait: the approval becomes `revoked`, with the reason.
        A wait cancelled because its caller went away (the MCP request cancelled or its session
        closed, the HTTP client disconnected) makes it `abandoned`, so no one approves a call
        nobody waits for; a durable call (`abandon_on_cancel=False`) keeps its approval.
        `caller_wait_s` (a plain NATS request's own timeout, `ToolCall.wait_s`): a request
        cannot be seen to go away, so once that long has passed the approval is `abandoned`
        the same way."""
        gone_at = time.monotonic() + caller_wait_s if caller_wait_s is not None else None
        row = await self.pool.fetchrow(
            f"INSERT INTO approvals (id, call_key, call_id, tool, profile, actor, arguments, expires_at, approver)"
            f" VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) ON CONFLICT (call_key) DO NOTHING RETURNING {_COLS}",
            uuid.uuid4(),
            call_key,
            call_id,
            tool,
            profile,
            f"{actor.kind}:{actor.id}",
            arguments,
            datetime.now(UTC) + timedelta(seconds=self.timeout_s),
            approver,
        )
        if row is None:  # a redelivered call: its approval exists already
            row = await self.pool.fetchrow(f"SELECT {_COLS} FROM approvals WHERE call_key = $1", call_key)
        else:
            self.changed()
            self.bus.emit(
                self.bus.new_event(
                    EventType.call_approval_requested,
                    actor=actor,
                    refs=refs,
                    status="pending",
                    data={
                        "approval_id": str(row["id"]),
                        "expires_at": row["expires_at"].isoformat(),
                        "approver": approver,
                    },
                )
            )
        approval_id = str(row["id"])
        event = self._waiters.setdefault(approval_id, asyncio.Event())
        asking = None
        if ask is not None and row["status"] == "pending":
            asking = asyncio.create_task(self._ask(approval_id, ask, tool, arguments, asker or actor))
        checked = -1
        beat = 0.0
        try:
            while True:
                if progress is not None and time.monotonic() - beat >= PROGRESS_EVERY_S:
                    beat = time.monotonic()
                    with contextlib.suppress(Exception):  # a caller that cannot hear it still waits
                        await progress(
                            0,
                            None,
                            f"waiting for an approval of {tool} (approval {row['id']}, up to {self.timeout_s:g}s)",
                        )
                if still_allowed is not None and checked != self.registry_generation and row["status"] == "pending":
                    checked = self.registry_generation
                    if (why := await still_allowed()) is not None:
                        await self._revoke(row["id"], why)
                row = await self.pool.fetchrow(f"SELECT {_COLS} FROM approvals WHERE id = $1", row["id"])
                status = row["status"]
                if status == "approved":
                    return
                if status == "rejected":
                    raise ApprovalRejected(f"the call was rejected: {row['reason'] or 'no reason given'}")
                if status == "revoked":
                    raise ApprovalRejected(f"the call lost its authority while held: {row['reason']}")
                remaining = (row["expires_at"] - datetime.now(UTC)).total_seconds()
                if status == "expired" or remaining <= 0:
                    await self._expire(row["id"])
                    raise ApprovalTimeout(
                        f"no approval decision within {self.timeout_s:g}s; ask an admin to approve, then call again"
                    )
                if status == "abandoned":
                    raise ApprovalRejected(f"the call was abandoned: {row['reason'] or 'the caller went away'}")
                wait = min(remaining, 5.0, PROGRESS_EVERY_S)
                if gone_at is not None:
                    left = gone_at - time.monotonic()
                    if left <= 0 and status == "pending":
                        why = f"the caller stopped waiting after {caller_wait_s:g}s (its request timeout)"
                        await self._abandon(row["id"], tool, profile, refs, why)
                        continue  # read back: abandoned, or decided just before
                    wait = min(wait, max(left, 0.0))
                event.clear()
                try:
                    await asyncio.wait_for(event.wait(), timeout=wait)
                except TimeoutError:
                    pass
        except asyncio.CancelledError:
            if abandon_on_cancel:
                # shielded: the update must land although this task is being cancelled
                await asyncio.shield(self._abandon(row["id"], tool, profile, refs))
            raise
        finally:
            self._waiters.pop(approval_id, None)
            if asking is not None and not asking.done():
                asking.cancel()  # decided elsewhere (or timed out): stop asking the user

    async def _ask(self, approval_id: str, ask: AskApproval, tool: str, arguments: dict[str, Any], by: Actor) -> None:
        try:
            decision = await ask(tool, arguments)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the client could not answer: the API or the timeout decides
            log.debug("asking the caller to approve failed", exc_info=True)
            return
        if decision is None:
            return
        approve, reason = decision
        try:
            await self.decide(approval_id, approve, ApprovalDecision(reason=reason or ""), by.id, kind=by.kind)
        except WardenError:
            pass  # decided or expired meanwhile: that decision stands

    async def _expire(self, approval_id: uuid.UUID) -> None:
        await self.pool.execute(
            "UPDATE approvals SET status = 'expired', decided_at = now() WHERE id = $1 AND status = 'pending'",
            approval_id,
        )
        self.changed()

    async def _abandon(
        self, approval_id: uuid.UUID, tool: str, profile: str, refs: EventRefs, why: str = "the caller went away"
    ) -> None:
        res = await self.pool.execute(
            "UPDATE approvals SET status = 'abandoned', reason = $2, decided_at = now()"
            " WHERE id = $1 AND status = 'pending'",
            approval_id,
            why,
        )
        if res.endswith(" 1"):
            self.changed()
            self.bus.emit(
                self.bus.new_event(
                    EventType.call_rejected,
                    actor=Actor(kind="system", id="proxy"),
                    refs=refs,
                    status="abandoned",
                    data={"approval_id": str(approval_id), "reason": why},
                )
            )

    async def _revoke(self, approval_id: uuid.UUID, why: str) -> None:
        row = await self.pool.fetchrow(
            "UPDATE approvals SET status = 'revoked', reason = $2, decided_by = 'registry', decided_by_kind = 'system',"
            " decided_at = now()"
            " WHERE id = $1 AND status = 'pending' RETURNING tool, profile, call_id",
            approval_id,
            why[:1000],
        )
        if row is not None:
            self.changed()
            self.bus.emit(
                self.bus.new_event(
                    EventType.call_rejected,
                    actor=Actor(kind="system", id="registry"),
                    refs=EventRefs(tool=row["tool"], profile=row["profile"], call_id=row["call_id"]),
                    status="revoked",
                    data={"approval_id": str(approval_id), "reason": why},
                )
            )

    def registry_changed(self) -> None:
        """A registry event arrived: every held call asks again whether its authority holds."""
        self.registry_generation += 1
        for ev in self._waiters.values():
            ev.set()

    def wake(self, approval_id: str | None) -> None:
        """A decision event arrived (from any replica)."""
        if approval_id and (ev := self._waiters.get(approval_id)) is not None:
            ev.set()

    async def decide(
        self, approval_id: str, approve: bool, body: ApprovalDecision, admin: str, *, kind: str = "admin"
    ) -> ApprovalView:
        """Approve or reject a pending call: an admin through the API (whatever the approver),
        or (`kind` user/agent) the caller at the client, asked with a form only when the tool's
        approver lets them (`CallPipeline.call` decides whom to ask)."""
        try:
            aid = uuid.UUID(approval_id)
        except ValueError:
            raise NotFound(f"no approval {approval_id!r}") from None
        kind = kind if kind in ("admin", "user", "agent") else "admin"
        row = await self.pool.fetchrow(
            f"UPDATE approvals SET status = $2, reason = $3, decided_by = $4, decided_by_kind = $5, decided_at = now()"
            f" WHERE id = $1 AND status = 'pending' AND expires_at > now() RETURNING {_COLS}",
            aid,
            "approved" if approve else "rejected",
            body.reason or None,
            admin,
            kind,
        )
        if row is None:
            existing = await self.pool.fetchrow(f"SELECT {_COLS} FROM approvals WHERE id = $1", aid)
            if existing is None:
                raise NotFound(f"no approval {approval_id!r}")
            raise Conflict(f"approval {approval_id} is already {existing['status']}")
        self.bus.emit(
            self.bus.new_event(
                EventType.call_approved if approve else EventType.call_rejected,
                actor=Actor(kind=kind, id=admin),  # type: ignore[arg-type]
                refs=EventRefs(tool=row["tool"], profile=row["profile"], call_id=row["call_id"]),
                status="approved" if approve else "rejected",
                data={"approval_id": approval_id, "reason": body.reason},
            )
        )
        self.wake(approval_id)
        self.changed()
        return _view(row)

    async def pending(self) -> list[ApprovalView]:
        """What waits for a decision now: pending and not past its expiry, oldest first."""
        rows = await self.pool.fetch(
            f"SELECT {_COLS} FROM approvals WHERE status = 'pending' AND expires_at > now() ORDER BY created_at"
        )
        return [_view(r) for r in rows]

    async def list(self, status: str | None) -> list[ApprovalView]:
        if status:
            rows = await self.pool.fetch(f"SELECT {_COLS} FROM approvals WHERE status = $1 ORDER BY created_at", status)
        else:
            rows = await self.pool.fetch(f"SELECT {_COLS} FROM approvals ORDER BY created_at DESC LIMIT 500")
        return [_view(r) for r in rows]
