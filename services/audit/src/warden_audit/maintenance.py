"""Keeping the audit log sound over time: `verify` recomputes the hash chain over a range and
reports the first break; `Maintenance` drops whole day partitions past the retention period
(no long locks) and old executions and dead letters in batches. Imports neither FastAPI nor nats.
"""

from __future__ import annotations

import logging
import time as _time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from warden_audit.chain import ZERO, Break, record_hash
from warden_audit.store import Store

__all__ = ["Maintenance", "verify"]

log = logging.getLogger(__name__)


# -- verify ------------------------------------------------------------------------------
async def verify(store: Store, since: datetime | None, until: datetime | None) -> dict[str, Any]:
    """Recompute the chain over rows ingested in [since, until); report the first break."""
    started = _time.perf_counter()
    brk: Break | None = None
    checked = 0
    first_seq: int | None = None
    prev_seq: int | None = None
    prev_hash = ZERO
    async with store.snapshot() as conn:
        head = await store.head(conn)
        anchor = await store.anchor(conn)
        async for r in store.chain_rows(conn, since, until):
            seq = r["seq"]
            if prev_seq is None:
                first_seq = seq
                expect: bytes | None
                if seq == 1:
                    expect = ZERO
                elif (before := await store.row_at(conn, seq - 1)) is not None:
                    expect = bytes(before["hash"])
                elif anchor is not None and anchor[0] == seq - 1:
                    expect = anchor[1]  # what precedes was removed by retention
                else:
                    brk = Break(seq - 1, None, f"row {seq - 1}, just before the range, is missing")
                    break
            elif seq != prev_seq + 1:
                brk = Break(prev_seq + 1, None, f"rows {prev_seq + 1}..{seq - 1} are missing")
                break
            else:
                expect = prev_hash
            if bytes(r["prev_hash"]) != expect:
                brk = Break(seq, r["id"], "prev_hash does not match the hash of the row before it")
                break
            h = record_hash(expect, r)
            if h != bytes(r["hash"]):
                brk = Break(seq, r["id"], "the row does not match its hash: it was changed after it was stored")
                break
            prev_seq, prev_hash = seq, h
            checked += 1
        if brk is None and until is None:
            # nothing may be missing between the last row and the chain head
            floor = anchor[0] if anchor else 0
            last = prev_seq if prev_seq is not None else None
            if last is not None and last < head.seq:
                brk = Break(last + 1, None, f"rows {last + 1}..{head.seq} (up to the chain head) are missing")
            elif last is not None and last == head.seq and prev_hash != head.hash:
                brk = Break(last, None, "the chain head does not match the last row")
            elif last is None and head.seq > floor and (since is None or head.ingested_at >= since):
                brk = Break(head.seq, None, "rows up to the chain head are missing")
    return {
        "ok": brk is None,
        "checked": checked,
        "first_seq": first_seq,
        "last_seq": prev_seq,
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "head": {"seq": head.seq, "hash": head.hash.hex(), "ingested_at": head.ingested_at.isoformat()},
        "first_break": brk.as_dict() if brk else None,
        "seconds": round(_time.perf_counter() - started, 3),
    }


# -- retention ---------------------------------------------------------------------------
@dataclass
class Maintenance:
    store: Store
    retention_days: int
    batch: int
    last: dict[str, Any] = field(default_factory=dict)

    async def ensure_partitions(self, now: datetime | None = None) -> None:
        today = (now or datetime.now(UTC)).date()
        await self.store.ensure_partitions([today + timedelta(days=i) for i in range(3)])

    async def run_once(self, now: datetime | None = None) -> dict[str, Any]:
        now = now or datetime.now(UTC)
        cutoff = now - timedelta(days=self.retention_days)
        out: dict[str, Any] = {"ran": False}
        async with self.store.maintenance_lock() as mine:
            if not mine:
                return out
            await self.ensure_partitions(now)
            dropped: list[str] = []
            rows = 0
            for name, day in await self.store.partitions():
                if _day_end(day) <= cutoff:
                    rows += await self.store.drop_partition(name, self.batch)
                    dropped.append(name)
            out = {
                "ran": True,
                "partitions_dropped": dropped,
                "events_removed": rows,
                "executions_removed": await self.store.delete_old_executions(cutoff, self.batch),
                "dead_letters_removed": await self.store.delete_old_dead_letters(cutoff, self.batch),
                "cutoff": cutoff.isoformat(),
            }
        if dropped or out["executions_removed"]:
            log.info("audit retention: %s", out)
        self.last = out
        return out


def _day_end(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
