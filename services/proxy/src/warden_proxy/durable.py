"""Durable calls: internal services submit through JetStream with an idempotency key.

A pull consumer shared by every proxy replica takes calls from the `<ROOT>_CALLS` stream.
Each call is recorded before it runs (`received`), marked `started` just before the
upstream call and `done` with its result, then the result is published on the caller's
result subject and the message acked. A proxy killed mid-call leaves the message un-acked:
JetStream redelivers it to another (or the restarted) replica, which resumes from the
record: `received` runs the call, `done` re-sends the stored result, and `started` — the
upstream may or may not have run — answers "outcome unknown" instead of running it twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StreamConfig
from nats.js.errors import NotFoundError
from pydantic import ValidationError
from warden_common.bus import Bus, validation_message
from warden_common.contracts import (
    DurableCall,
    DurableResult,
    DurableStatus,
    ErrorCode,
    ReplyError,
    ToolCallResult,
    durable_calls_stream_name,
    durable_results_subject,
    legacy_durable_results_subject,
)
from warden_common.errors import NotFound, WardenError

from warden_proxy.agents import Principal
from warden_proxy.service import CallPipeline

__all__ = ["DurableCalls"]

log = logging.getLogger(__name__)
_VERSION = "v1"


class DurableCalls:
    def __init__(self, bus: Bus, pool: asyncpg.Pool, pipeline: CallPipeline, *, ack_wait_s: float = 30.0) -> None:
        self.bus = bus
        self.pool = pool
        self.pipeline = pipeline
        self.ack_wait_s = ack_wait_s
        self.stream = durable_calls_stream_name(bus.root)
        self.subjects = f"{bus.root}.{_VERSION}.durable.calls.*"
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()

    async def start(self) -> None:
        js = self.bus.nc.jetstream()  # type: ignore[union-attr]
        cfg = StreamConfig(
            name=self.stream,
            subjects=[self.subjects],
            retention=RetentionPolicy.WORK_QUEUE,
            duplicate_window=300,
            max_age=7 * 24 * 3600,
            num_replicas=self.bus.settings.stream_replicas,
        )
        try:
            await js.stream_info(self.stream)
        except NotFoundError:
            await js.add_stream(cfg)
        self._sub = await js.pull_subscribe(
            self.subjects,
            durable="proxy",
            stream=self.stream,
            config=ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT, ack_wait=self.ack_wait_s, max_deliver=20, max_ack_pending=1000
            ),
        )
        self._task = asyncio.create_task(self._loop(), name="durable-calls")
        await self.bus.serve_on(
            f"{self.bus.root}.{_VERSION}.durable.status.*",
            DurableStatus,
            self._status,  # type: ignore[arg-type]  # with_msg: the handler also gets the message
            with_msg=True,
        )

    async def _status(self, req: DurableStatus, m: Msg) -> DurableResult:
        profile = m.subject.rsplit(".", 1)[-1]
        row = await self.pool.fetchrow(
            "SELECT state, result, error FROM durable_calls WHERE call_key = $1", f"{profile}:{req.idempotency_key}"
        )
        if row is None:
            raise NotFound(f"no durable call with key {req.idempotency_key!r} for profile {profile}")
        if row["state"] != "done":
            return DurableResult(idempotency_key=req.idempotency_key)
        return DurableResult(
            idempotency_key=req.idempotency_key,
            result=ToolCallResult.model_validate(row["result"]) if row["result"] is not None else None,
            error=row["error"],
        )

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._inflight:
            await asyncio.wait(self._inflight, timeout=10)

    async def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                msgs = await self._sub.fetch(batch=32, timeout=1.0)
            except TimeoutError:
                continue
            except Exception:  # noqa: BLE001 - keep consuming through NATS hiccups
                log.warning("durable calls: fetch failed; retrying", exc_info=True)
                await asyncio.sleep(0.5)
                continue
            for m in msgs:
                t = asyncio.create_task(self._handle(m))
                self._inflight.add(t)
                t.add_done_callback(self._inflight.discard)

    async def _keepalive(self, m: Msg) -> None:
        while True:
            await asyncio.sleep(self.ack_wait_s / 3)
            with contextlib.suppress(Exception):
                await m.in_progress()

    async def _handle(self, m: Msg) -> None:
        profile = m.subject.rsplit(".", 1)[-1]
        try:
            req = DurableCall.model_validate_json(m.data)
        except ValidationError as e:
            log.warning("durable call on %s dropped: %s", m.subject, validation_message(e))
            await m.term()
            return
        key = f"{profile}:{req.idempotency_key}"
        keep = asyncio.create_task(self._keepalive(m))
        try:
            row = await self.pool.fetchrow(
                "INSERT INTO durable_calls (call_key, profile, tool) VALUES ($1,$2,$3)"
                " ON CONFLICT (call_key) DO UPDATE SET deliveries = durable_calls.deliveries + 1, updated_at = now()"
                " RETURNING state, result, error",
                key,
                profile,
                req.tool,
            )
            if row["state"] == "done":
                await self._publish(profile, req.idempotency_key, row["result"], row["error"])
            elif row["state"] == "started":
                err = ReplyError(
                    code=ErrorCode.upstream_error,
                    message="the proxy stopped while this call was in flight upstream; it was not run again, "
                    "so its outcome is unknown — check the upstream before retrying with a new key",
                ).model_dump(mode="json")
                await self._finish(key, None, err)
                await self._publish(profile, req.idempotency_key, None, err)
            else:
                result, error = await self._run(profile, key, req, m)
                await self._finish(key, result, error)
                await self._publish(profile, req.idempotency_key, result, error)
            await m.ack()
        except (asyncpg.PostgresError, OSError):
            log.warning("durable call %s: storage unavailable; it will be redelivered", key, exc_info=True)
            with contextlib.suppress(Exception):
                await m.nak(delay=2)
        finally:
            keep.cancel()

    async def _run(self, profile: str, key: str, req: DurableCall, m: Msg) -> tuple[Any, Any]:
        caller = (m.headers or {}).get("Warden-Caller", "internal")[:100]
        principal = Principal(kind="service", id=caller, profile=profile, user=req.user)

        async def mark_started() -> None:
            await self.pool.execute(
                "UPDATE durable_calls SET state = 'started', updated_at = now() WHERE call_key = $1", key
            )

        try:
            r: ToolCallResult = await self.pipeline.call(
                principal,
                req.tool,
                req.arguments,
                idempotency_key=req.idempotency_key,
                before_upstream=mark_started,
                durable=True,  # its result is stored: a held call keeps waiting when the caller goes
            )
            return r.model_dump(mode="json"), None
        except WardenError as e:
            return None, e.to_reply().model_dump(mode="json")

    async def _finish(self, key: str, result: Any, error: Any) -> None:
        await self.pool.execute(
            "UPDATE durable_calls SET state = 'done', result = $2, error = $3, updated_at = now() WHERE call_key = $1",
            key,
            result,
            error,
        )

    async def _publish(self, profile: str, idem: str, result: Any, error: Any) -> None:
        subject = durable_results_subject(self.bus.root, profile, idem)
        res = DurableResult(
            idempotency_key=idem,
            result=ToolCallResult.model_validate(result) if result is not None else None,
            error=error,
        )
        body = res.model_dump_json().encode()
        if len(body) > self.bus.message_limit:
            # the stored result stays in Postgres; the caller reads why it cannot come over the bus
            err = self.bus.too_large(f"the result of durable call {idem[:100]!r}", len(body))
            log.warning("%s", err.message)
            body = (
                DurableResult(idempotency_key=idem, error=err.to_reply().model_dump(mode="json"))
                .model_dump_json()
                .encode()
            )
        await self.bus.nc.publish(subject, body)  # type: ignore[union-attr]
        # clients from before the hashed subjects listen on the old one; they are served there
        # too until the next release (a client of today listens on both and checks the key)
        legacy = legacy_durable_results_subject(self.bus.root, profile, idem)
        await self.bus.nc.publish(legacy, body)  # type: ignore[union-attr]
