"""Durable calls: internal services submit through JetStream with an idempotency key.

A pull consumer shared by every proxy replica takes calls from the `<ROOT>_CALLS` stream.
Each call is recorded before it runs (`received`), marked `started` just before the
upstream call and `done` with its result, then the result is published on the caller's
result subject and the message acked. A proxy killed mid-call leaves the message un-acked:
JetStream redelivers it to another (or the restarted) replica, which resumes from the
record: `received` runs the call, `done` re-sends the stored result, and `started` — the
upstream may or may not have run — answers "outcome unknown" instead of running it twice.

Idempotency does not rest on JetStream's message id alone (a caller may publish without one,
or after the de-duplication window): every delivery first claims its key in Postgres, in one
statement. One handler owns the key (a lease it keeps fresh while it runs; a lapsed lease,
its holder dead, is taken over) and every other delivery waits for its result and answers
that. The key is bound to its call's fingerprint (tool, arguments, user): the same key for
another call is refused with `conflict`, sent to that caller alone. A message that is not a
valid durable call is answered with `invalid` on its key's result subject, then removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import uuid
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
    attested_durable_calls_wildcard,
    call_origin,
    durable_calls_stream_name,
    durable_results_subject,
    legacy_durable_results_subject,
)
from warden_common.errors import BadInput, Conflict, NotFound, WardenError

from warden_proxy.agents import service_principal
from warden_proxy.service import CallPipeline

__all__ = ["DurableCalls"]

log = logging.getLogger(__name__)
_VERSION = "v1"
_WAIT_POLL_S = 0.25  # a delivery waiting for another's run of its key looks this often
_KEY = re.compile(r"^[A-Za-z0-9._:-]{1,200}$")  # DurableCall.idempotency_key


class _ClaimLost(WardenError):
    """This handler's claim on a key lapsed and was taken over before the upstream call."""

    code = ErrorCode.conflict
    http_status = 409


def _conflict(idem: str) -> Conflict:
    return Conflict(
        f"idempotency key {idem[:100]!r} was already used for another call (a different tool, arguments "
        "or user): its result is not yours; use a new key for this call"
    )


class DurableCalls:
    def __init__(
        self,
        bus: Bus,
        pool: asyncpg.Pool,
        pipeline: CallPipeline,
        *,
        ack_wait_s: float = 30.0,
        act_for: frozenset[str] = frozenset(),
    ) -> None:
        self.bus = bus
        self.pool = pool
        self.pipeline = pipeline
        self.ack_wait_s = ack_wait_s
        self.act_for = act_for
        self.stream = durable_calls_stream_name(bus.root)
        # the older subjects (`durable.calls.<profile>`, caller unattested) and the ones that
        # name their caller's NATS user (`durable.calls.<profile>.<user>`): one stream, one
        # consumer each (a work queue allows consumers whose filters do not overlap), so a
        # proxy from before, which knows only the first consumer, never takes the second kind
        self.subjects = f"{bus.root}.{_VERSION}.durable.calls.*"
        self.attested = attested_durable_calls_wildcard(bus.root)
        self._tasks: list[asyncio.Task[None]] = []
        self._inflight: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()

    async def start(self) -> None:
        js = self.bus.nc.jetstream()  # type: ignore[union-attr]
        subjects = [self.subjects, self.attested]
        cfg = StreamConfig(
            name=self.stream,
            subjects=subjects,
            retention=RetentionPolicy.WORK_QUEUE,
            duplicate_window=300,
            max_age=7 * 24 * 3600,
            num_replicas=self.bus.settings.stream_replicas,
        )
        try:
            info = await js.stream_info(self.stream)
            if set(info.config.subjects or []) != set(subjects):
                # a stream made by a proxy from before carries the older subjects only
                info.config.subjects = subjects
                await js.update_stream(info.config)
        except NotFoundError:
            await js.add_stream(cfg)
        for durable, subject in (("proxy", self.subjects), ("proxy-attested", self.attested)):
            sub = await js.pull_subscribe(
                subject,
                durable=durable,
                stream=self.stream,
                config=ConsumerConfig(
                    ack_policy=AckPolicy.EXPLICIT, ack_wait=self.ack_wait_s, max_deliver=20, max_ack_pending=1000
                ),
            )
            self._tasks.append(asyncio.create_task(self._loop(sub), name=f"durable-calls-{durable}"))
        await self.bus.serve_on(
            f"{self.bus.root}.{_VERSION}.durable.status.*",
            DurableStatus,
            self._status,  # type: ignore[arg-type]  # with_msg: the handler also gets the message
            with_msg=True,
        )

    async def _status(self, req: DurableStatus, m: Msg) -> DurableResult:
        profile = m.subject.rsplit(".", 1)[-1]
        row = await self.pool.fetchrow(
            "SELECT state, result, error, fingerprint FROM durable_calls WHERE call_key = $1",
            f"{profile}:{req.idempotency_key}",
        )
        if row is None:
            raise NotFound(f"no durable call with key {req.idempotency_key!r} for profile {profile}")
        if req.fingerprint and row["fingerprint"] and req.fingerprint != row["fingerprint"]:
            raise _conflict(req.idempotency_key)
        if row["state"] != "done":
            return DurableResult(idempotency_key=req.idempotency_key, fingerprint=row["fingerprint"])
        return DurableResult(
            idempotency_key=req.idempotency_key,
            result=ToolCallResult.model_validate(row["result"]) if row["result"] is not None else None,
            error=row["error"],
            fingerprint=row["fingerprint"],
        )

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._inflight:
            await asyncio.wait(self._inflight, timeout=10)

    async def _loop(self, sub: Any) -> None:
        while not self._stop.is_set():
            try:
                msgs = await sub.fetch(batch=32, timeout=1.0)
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

    async def _keepalive(self, m: Msg, key: str | None = None, owner: str | None = None) -> None:
        """Tell JetStream the message is still being worked on, and keep this handler's claim
        on the key fresh (a claim whose lease lapsed, its holder dead, is taken over)."""
        while True:
            await asyncio.sleep(self.ack_wait_s / 3)
            with contextlib.suppress(Exception):
                await m.in_progress()
            if key is not None:
                with contextlib.suppress(asyncpg.PostgresError, OSError):
                    await self.pool.execute(
                        "UPDATE durable_calls SET claimed_until = now() + make_interval(secs => $3)"
                        " WHERE call_key = $1 AND claimed_by = $2 AND state <> 'done'",
                        key,
                        owner,
                        self._lease_s,
                    )

    @property
    def _lease_s(self) -> float:
        return max(self.ack_wait_s, 1.0)

    async def _claim(self, key: str, profile: str, req: DurableCall, fp: str, owner: str, first: bool) -> Any:
        """Record the call, and take the key unless another live handler holds it: one
        statement, so of any number of deliveries of one key exactly one owns it. Returns the
        row with `mine` (this handler owns the key)."""
        return await self.pool.fetchrow(
            """
            INSERT INTO durable_calls AS d (call_key, profile, tool, fingerprint, claimed_by, claimed_until)
            VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))
            ON CONFLICT (call_key) DO UPDATE SET
                deliveries = d.deliveries + $7::int,
                fingerprint = COALESCE(d.fingerprint, EXCLUDED.fingerprint),
                claimed_by = CASE WHEN d.state <> 'done'
                    AND COALESCE(d.fingerprint, EXCLUDED.fingerprint) = EXCLUDED.fingerprint
                    AND (d.claimed_by IS NULL OR d.claimed_by = EXCLUDED.claimed_by OR d.claimed_until < now())
                    THEN EXCLUDED.claimed_by ELSE d.claimed_by END,
                claimed_until = CASE WHEN d.state <> 'done'
                    AND COALESCE(d.fingerprint, EXCLUDED.fingerprint) = EXCLUDED.fingerprint
                    AND (d.claimed_by IS NULL OR d.claimed_by = EXCLUDED.claimed_by OR d.claimed_until < now())
                    THEN EXCLUDED.claimed_until ELSE d.claimed_until END,
                updated_at = now()
            RETURNING state, result, error, fingerprint, claimed_by = $5 AS mine
            """,
            key,
            profile,
            req.tool,
            fp,
            owner,
            self._lease_s,
            int(first),
        )

    async def _handle(self, m: Msg) -> None:
        profile, _ = call_origin(self.bus.root, m.subject)
        try:
            req = DurableCall.model_validate_json(m.data)
        except ValidationError as e:
            await self._refuse_malformed(profile, m, validation_message(e))
            return
        key = f"{profile}:{req.idempotency_key}"
        fp = req.fingerprint()
        owner = uuid.uuid4().hex  # this handling of this delivery
        keep = asyncio.create_task(self._keepalive(m, key, owner))
        try:
            row = await self._claim(key, profile, req, fp, owner, True)
            # another delivery of this key runs it (a resubmission without a message id, a
            # redelivery racing a slow handler): wait for its result, never run it twice
            while row["fingerprint"] == fp and row["state"] != "done" and not row["mine"]:
                await asyncio.sleep(_WAIT_POLL_S)
                row = await self._claim(key, profile, req, fp, owner, False)
            if row["fingerprint"] != fp:
                err = _conflict(req.idempotency_key).to_reply().model_dump(mode="json")
                log.warning("durable call %s refused: the key was used for another call", key)
                await self._publish(profile, req.idempotency_key, None, err, fp)
            elif row["state"] == "done":
                await self._publish(profile, req.idempotency_key, row["result"], row["error"], fp)
            elif row["state"] == "started":
                err = ReplyError(
                    code=ErrorCode.upstream_error,
                    message="the proxy stopped while this call was in flight upstream; it was not run again, "
                    "so its outcome is unknown — check the upstream before retrying with a new key",
                ).model_dump(mode="json")
                if not await self._finish(key, owner, None, err):
                    return  # the claim was lost (taken over): its new holder answers
                await self._publish(profile, req.idempotency_key, None, err, fp)
            else:
                try:
                    result, error = await self._run(profile, key, owner, req, m)
                except _ClaimLost:
                    log.warning("durable call %s: claim lost before the upstream call; its new holder runs it", key)
                    return
                if not await self._finish(key, owner, result, error):
                    return
                await self._publish(profile, req.idempotency_key, result, error, fp)
            await m.ack()
        except (asyncpg.PostgresError, OSError):
            log.warning("durable call %s: storage unavailable; it will be redelivered", key, exc_info=True)
            with contextlib.suppress(Exception):
                await m.nak(delay=2)
        finally:
            keep.cancel()

    async def _refuse_malformed(self, profile: str, m: Msg, why: str) -> None:
        """A message that is not a valid durable call is answered with a typed `invalid` on
        its key's result subject when it names a usable key (marked `malformed`, so no caller
        of a valid call with that key takes it), then removed from the stream."""
        key: Any = None
        with contextlib.suppress(ValueError):
            doc = json.loads(m.data)
            key = doc.get("idempotency_key") if isinstance(doc, dict) else None
        log.warning("durable call on %s refused: %s", m.subject, why)
        if isinstance(key, str) and _KEY.fullmatch(key):
            err = BadInput(f"this durable call is not valid: {why}").to_reply().model_dump(mode="json")
            with contextlib.suppress(Exception):
                await self._publish(profile, key, None, err, "malformed")
        await m.term()

    async def _run(self, profile: str, key: str, owner: str, req: DurableCall, m: Msg) -> tuple[Any, Any]:
        # the actor is the NATS user the subject names, never a header's claim
        _, caller = call_origin(self.bus.root, m.subject)
        try:
            principal = service_principal(profile, caller, req.user, self.act_for)
        except WardenError as e:
            return None, e.to_reply().model_dump(mode="json")

        async def mark_started() -> None:
            # only while this handler holds the key: never two upstream calls for one key
            done = await self.pool.execute(
                "UPDATE durable_calls SET state = 'started', updated_at = now()"
                " WHERE call_key = $1 AND claimed_by = $2 AND state = 'received'",
                key,
                owner,
            )
            if done != "UPDATE 1":
                raise _ClaimLost(f"durable call {key!r} is no longer held by this handler")

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
        except _ClaimLost:
            raise
        except WardenError as e:
            return None, e.to_reply().model_dump(mode="json")

    async def _finish(self, key: str, owner: str, result: Any, error: Any) -> bool:
        """Store the outcome if this handler still holds the key (False: it was taken over)."""
        done = await self.pool.execute(
            "UPDATE durable_calls SET state = 'done', result = $3, error = $4, claimed_until = NULL, updated_at = now()"
            " WHERE call_key = $1 AND claimed_by = $2 AND state <> 'done'",
            key,
            owner,
            result,
            error,
        )
        return bool(done == "UPDATE 1")

    async def _publish(self, profile: str, idem: str, result: Any, error: Any, fp: str | None = None) -> None:
        subject = durable_results_subject(self.bus.root, profile, idem)
        res = DurableResult(
            idempotency_key=idem,
            result=ToolCallResult.model_validate(result) if result is not None else None,
            error=error,
            fingerprint=fp,
        )
        body = res.model_dump_json().encode()
        if len(body) > self.bus.message_limit:
            # the stored result stays in Postgres; the caller reads why it cannot come over the bus
            err = self.bus.too_large(f"the result of durable call {idem[:100]!r}", len(body))
            log.warning("%s", err.message)
            body = (
                DurableResult(idempotency_key=idem, error=err.to_reply().model_dump(mode="json"), fingerprint=fp)
                .model_dump_json()
                .encode()
            )
        await self.bus.nc.publish(subject, body)  # type: ignore[union-attr]
        # clients from before the hashed subjects listen on the old one; they are served there
        # too until the next release (a client of today listens on both and checks the key)
        legacy = legacy_durable_results_subject(self.bus.root, profile, idem)
        await self.bus.nc.publish(legacy, body)  # type: ignore[union-attr]
