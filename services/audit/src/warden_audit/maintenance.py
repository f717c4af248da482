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

from warden_audit.chain import ZERO, Break, Layout, record_hash
from warden_audit.checkpoints import CheckpointError, Checkpoints
from warden_audit.store import Head, Store

__all__ = ["Maintenance", "verify"]

log = logging.getLogger(__name__)


# -- verify ------------------------------------------------------------------------------
async def verify(
    store: Store, since: datetime | None, until: datetime | None, checkpoints: Checkpoints | None = None
) -> dict[str, Any]:
    """Recompute every lane over rows ingested in [since, until); report each lane's first
    break and, as `first_break`, the one of the lowest lane. With `checkpoints` and the whole
    range, the rows and heads are also checked against the last signed checkpoint (kept
    outside the database), and a new one is written when everything holds."""
    started = _time.perf_counter()
    checkpoint: dict[str, Any] | None = None
    executions: dict[str, Any] | None = None
    full = checkpoints is not None and since is None and until is None
    if full and checkpoints is not None:
        try:
            first_use = checkpoints.latest() is None
        except CheckpointError:
            first_use = False
        if first_use:
            # trusted once, as the first checkpoint trusts the lanes: rows from before the key
            await store.sign_unsigned_executions(checkpoints.sign_execution)
    async with store.snapshot() as conn:
        lay = await store.layout(conn)
        heads = await store.heads(conn)
        anchors = await store.anchors(conn)
        lanes = [await _verify_lane(store, conn, lay, h, anchors.get(h.lane), since, until) for h in heads]
        if checkpoints is not None and since is None and until is None:
            checkpoint = await _against_checkpoint(store, conn, checkpoints, heads, anchors, lanes)
            executions = await _verify_executions(store, conn, checkpoints)
    first = next((ln["first_break"] for ln in lanes if ln["first_break"] is not None), None)
    if checkpoint is not None and checkpoint.get("break") and first is None:
        first = checkpoint["break"]
    if executions is not None and executions.get("break") and first is None:
        first = executions["break"]
    if checkpoints is not None and since is None and until is None and first is None:
        checkpoint = {**(checkpoint or {}), "written": checkpoints.write(heads)["time"]}
    firsts = [ln["first_seq"] for ln in lanes if ln["first_seq"] is not None]
    lasts = [ln["last_seq"] for ln in lanes if ln["last_seq"] is not None]
    return {
        "ok": first is None,
        "checked": sum(ln["checked"] for ln in lanes),
        "first_seq": min(firsts) if firsts else None,
        "last_seq": max(lasts) if lasts else None,
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "lanes": lanes,
        "first_break": first,
        "checkpoint": checkpoint,
        "executions": executions,
        "seconds": round(_time.perf_counter() - started, 3),
    }


async def _verify_executions(store: Store, conn: Any, checkpoints: Checkpoints) -> dict[str, Any]:
    """Every executions row against its signature (written with the row, under the chain key):
    a row edited, or its signature removed, with SQL is reported (the first one, by call id)."""
    checked = 0
    async for r in store.signed_executions(conn):
        checked += 1
        if not checkpoints.execution_ok(r, r["mac"]):
            why = "has no signature" if r["mac"] is None else "does not match its signature"
            brk = Break(
                -1, 0, r["call_id"], f"the executions row of call {r['call_id']} {why}: it was changed outside audit"
            )
            return {"checked": checked, "break": brk.as_dict()}
    return {"checked": checked}


async def _against_checkpoint(
    store: Store,
    conn: Any,
    checkpoints: Checkpoints,
    heads: list[Head],
    anchors: dict[int, tuple[int, bytes]],
    lanes: list[dict[str, Any]],
) -> dict[str, Any]:
    """Each lane of the last signed checkpoint: its row still there with the signed hash (or
    removed by retention), and the lane no shorter. A rewrite up to the checkpoint (a row
    edited and everything after it re-chained) changes that row's hash: reported."""
    try:
        cp = checkpoints.latest()
    except CheckpointError as e:
        return {"checked": None, "break": Break(-1, 0, None, str(e)).as_dict()}
    if cp is None:
        return {"checked": None}
    by_lane = {h.lane: h for h in heads}
    for entry in cp.get("lanes", []):
        lane, seq, want = int(entry["lane"]), int(entry["seq"]), bytes.fromhex(entry["hash"])
        head = by_lane.get(lane)
        brk: Break | None = None
        if head is None or head.lane_seq < int(entry["lane_seq"]):
            brk = Break(lane, seq, None, f"lane {lane} is shorter than its signed checkpoint of {cp['time']}")
        elif int(entry["lane_seq"]) > 0:
            row = await store.row_at(conn, lane, seq)
            anchor = anchors.get(lane)
            if row is None and not (anchor is not None and seq <= anchor[0]):
                brk = Break(lane, seq, None, f"the row signed in the checkpoint of {cp['time']} is missing")
            elif row is not None and bytes(row["hash"]) != want:
                brk = Break(
                    lane,
                    seq,
                    row["id"],
                    f"the lane was rewritten: this row's hash is not the one signed in the checkpoint of {cp['time']}",
                )
        if brk is not None:
            for ln in lanes:
                if ln["lane"] == lane and ln["first_break"] is None:
                    ln["first_break"] = brk.as_dict()
            return {"checked": cp["time"], "break": brk.as_dict()}
    return {"checked": cp["time"]}


async def _verify_lane(
    store: Store,
    conn: Any,
    lay: Layout,
    head: Head,
    anchor: tuple[int, bytes] | None,
    since: datetime | None,
    until: datetime | None,
) -> dict[str, Any]:
    """One lane: its rows in place order, each linked to the one before, none missing, up
    to the lane's head (when the range is open-ended)."""
    lane = head.lane
    brk: Break | None = None
    checked = 0
    first_seq: int | None = None
    prev_place: int | None = None
    prev_hash = ZERO
    start = lay.start(lane)
    # the anchor: the last row retention removed from this lane
    floor, floor_hash = (lay.place(anchor[0]), anchor[1]) if anchor else (start, ZERO)
    async for r in store.chain_rows(conn, lane, since, until):
        seq = r["seq"]
        place = lay.place(seq)
        if lay.lane(seq) != lane:
            brk = Break(lane, seq, r["id"], f"seq {seq} does not belong to lane {lane}")
            break
        if prev_place is None:
            first_seq = seq
            expect: bytes | None
            if place - 1 == start:
                expect = ZERO
            elif (before := await store.row_at(conn, lane, lay.seq(lane, place - 1))) is not None:
                expect = bytes(before["hash"])
            elif place - 1 == floor:
                expect = floor_hash  # what precedes was removed by retention
            else:
                missing = lay.seq(lane, place - 1)
                brk = Break(lane, missing, None, f"row {missing}, just before the range in lane {lane}, is missing")
                break
        elif place != prev_place + 1:
            lo = lay.seq(lane, prev_place + 1)
            brk = Break(lane, lo, None, f"{_span(lay, lane, prev_place + 1, place - 1)} of lane {lane} missing")
            break
        else:
            expect = prev_hash
        if bytes(r["prev_hash"]) != expect:
            brk = Break(lane, seq, r["id"], "prev_hash does not match the hash of the row before it in its lane")
            break
        h = record_hash(expect, r)
        if h != bytes(r["hash"]):
            brk = Break(lane, seq, r["id"], "the row does not match its hash: it was changed after it was stored")
            break
        prev_place, prev_hash = place, h
        checked += 1
    if brk is None and until is None:
        # nothing may be missing between the lane's last row and its head
        if prev_place is not None and prev_place < head.lane_seq:
            lo = lay.seq(lane, prev_place + 1)
            span = _span(lay, lane, prev_place + 1, head.lane_seq)
            brk = Break(lane, lo, None, f"{span} of lane {lane} (up to its head) missing")
        elif prev_place is not None and prev_place == head.lane_seq and prev_hash != head.hash:
            brk = Break(lane, head.seq, None, f"the head of lane {lane} does not match its last row")
        elif prev_place is None and head.lane_seq > floor and (since is None or head.ingested_at >= since):
            brk = Break(lane, head.seq, None, f"rows of lane {lane} up to its head are missing")
    return {
        "lane": lane,
        "checked": checked,
        "first_seq": first_seq,
        "last_seq": lay.seq(lane, prev_place) if prev_place is not None else None,
        "head": head.as_dict(),
        "first_break": brk.as_dict() if brk else None,
    }


def _span(lay: Layout, lane: int, lo: int, hi: int) -> str:
    """Places lo..hi of a lane, in words ("the row with seq 8 is", "3 rows, seq 8..16, are")."""
    if lo == hi:
        return f"the row with seq {lay.seq(lane, lo)} is"
    return f"{hi - lo + 1} rows, seq {lay.seq(lane, lo)}..{lay.seq(lane, hi)}, are"


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
