"""A small typed client for internal services that call tools through Warden over NATS.

    async with WardenClient(nats_url="nats://…", profile="billing", user="svc", password="…") as warden:
        result = await warden.call("notion__search", {"query": "roadmap"})
        result = await warden.call_durable("github__create_issue", {...}, idempotency_key="ticket-4711")

`call` is request/reply on `warden.v1.calls.<profile>.<user>` (the connection's NATS user:
the server lets it publish on its own name only, and the proxy records that name as the
actor; `user=` on a call names the end user it acts for, allowed only for the services the
proxy's `WARDEN_PROXY_ACT_FOR_USERS` lists); `call_durable` goes through
JetStream: if a proxy dies mid-call the call is redelivered, and it never runs twice for
the same key. Refusals raise the typed errors of `warden_common.errors` (e.g.
`Forbidden` for an ungranted tool, `RemoteError` with code `consent_required`); a tool
that ran and failed returns a result with `is_error=True`.

It fails fast with the real reason: a wrong user or password raises `Unauthorized` naming
the user and server, a server that refuses the connection `Unavailable` ("connection
refused"), both within the connect timeout; a call on a subject the NATS user may not
publish to (another profile) or a result it may not subscribe to raises `Forbidden` naming
the subject and user as soon as the server says so, not after the call's timeout.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Iterable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from warden_common.contracts import (
    DurableCall,
    DurableResult,
    DurableStatus,
    ReplyError,
    ToolCall,
    ToolCallResult,
    calls_subject,
    durable_calls_subject,
    durable_results_subject,
    durable_status_subject,
    legacy_durable_results_subject,
)
from warden_common.errors import (
    Conflict,
    Forbidden,
    NotFound,
    Timeout,
    TooLarge,
    Unauthorized,
    Unavailable,
    WardenError,
    from_reply_error,
)
from warden_common.limits import HEADER_ROOM
from warden_common.natsauth import inbox_prefix
from warden_common.rpc import ask, decode_reply
from warden_common.settings import nats_servers

__all__ = ["WardenClient"]

T = TypeVar("T")
# what the server sends on a denied publish or subscribe (the connection stays up)
_DENIED = re.compile(r'permissions violation for (publish|subscription) to "([^"]+)"', re.IGNORECASE)


class WardenClient:
    def __init__(
        self,
        *,
        nats_url: str,
        profile: str,
        root: str = "warden",
        user: str | None = None,
        password: str | None = None,
        timeout_s: float = 120.0,
        caller: str = "internal",
        connect_timeout_s: int = 5,
    ) -> None:
        self.nats_url = nats_url
        self.profile = profile
        self.root = root
        self.user = user
        self.password = password
        self.timeout_s = timeout_s
        self.caller = caller
        self.connect_timeout_s = connect_timeout_s
        self._nc: NatsClient | None = None
        self._connect_errors: list[Exception] = []
        # subject -> the pending calls that fail with `Forbidden` if the server denies it
        self._watching: dict[str, set[asyncio.Future[None]]] = {}

    async def __aenter__(self) -> WardenClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        kw: dict[str, Any] = {
            "servers": nats_servers(self.nats_url),  # one URL, or a cluster's, comma-separated
            "name": f"warden-client-{self.caller}",
            # replies come to this user's own inbox, the only one its permissions let it read
            "inbox_prefix": inbox_prefix(self.user),
            "error_cb": self._on_error,
            "connect_timeout": self.connect_timeout_s,
            # the first connect: each server once more at most, without pause, then the real
            # reason (nats-py's default retries for minutes and then says only NoServersError)
            "max_reconnect_attempts": 1,
            "reconnect_time_wait": 0,
        }
        if self.user:
            kw.update(user=self.user, password=self.password or "")
        self._connect_errors = []
        try:
            nc = await nats.connect(**kw)
        except (TimeoutError, OSError, nats.errors.Error) as e:
            raise self._connect_error(e) from None
        # once connected, a lost server is reconnected to for as long as it takes (as `Bus`)
        nc.options["max_reconnect_attempts"] = -1
        nc.options["reconnect_time_wait"] = 0.5
        self._nc = nc

    def _where(self) -> str:
        """The servers as host:port (never a user or password a URL may carry)."""
        out = []
        for u in nats_servers(self.nats_url):
            parts = urlsplit(u if "://" in u else f"nats://{u}")
            out.append(f"{parts.hostname}:{parts.port or 4222}")
        return ", ".join(out)

    def _connect_error(self, last: BaseException) -> WardenError:
        seen = [*self._connect_errors, last]
        where = self._where()
        if any(
            isinstance(e, nats.errors.AuthorizationError) or "authorization violation" in str(e).lower() for e in seen
        ):
            if not self.user:
                return Unauthorized(f"NATS at {where} requires a user and password: pass user= and password=")
            return Unauthorized(
                f"NATS at {where} refused user {self.user!r}: wrong user name or password (Authorization Violation)"
            )
        if any(isinstance(e, ConnectionRefusedError) for e in seen):
            return Unavailable(f"cannot reach NATS at {where} (connection refused)")
        if any(isinstance(e, TimeoutError) for e in seen):
            return Unavailable(f"cannot reach NATS at {where} (no answer within {self.connect_timeout_s}s)")
        reason = next((e for e in seen if not isinstance(e, nats.errors.NoServersError)), last)
        return Unavailable(f"cannot reach NATS at {where}: {type(reason).__name__}")

    async def _on_error(self, e: Exception) -> None:
        if self._nc is None:
            self._connect_errors.append(e)
            return
        m = _DENIED.search(str(e))
        if m is None:
            return
        verb = "publish to" if m.group(1).lower() == "publish" else "subscribe to"
        subject = m.group(2)
        for fut in self._watching.get(subject, ()):
            if not fut.done():
                fut.set_exception(
                    Forbidden(
                        f"NATS user {self.user!r} may not {verb} {subject!r} (its permissions on the server): "
                        f"is {self.profile!r} the profile this service is allowed to call?",
                        details={"subject": subject, "nats_user": self.user},
                    )
                )

    async def _guarded(self, subjects: Iterable[str], aw: Awaitable[T]) -> T:
        """`aw`, failed at once with `Forbidden` when the server denies one of `subjects` (it
        drops a denied message silently otherwise: a call would wait for its whole timeout)."""
        denied: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        subjects = list(subjects)
        for sub in subjects:
            self._watching.setdefault(sub, set()).add(denied)
        task: asyncio.Future[Any] = asyncio.ensure_future(aw)
        try:
            await asyncio.wait([task, denied], return_when=asyncio.FIRST_COMPLETED)
            if denied.done():
                denied.result()  # raises Forbidden
            return task.result()
        finally:
            if not task.done():
                task.cancel()
                await asyncio.wait({task})  # its own clean-up (unsubscribing) runs first
            if not denied.done():
                denied.cancel()
            for sub in subjects:
                waiting = self._watching.get(sub)
                if waiting is not None:
                    waiting.discard(denied)
                    if not waiting:
                        del self._watching[sub]

    async def close(self) -> None:
        if self._nc is not None:
            nc, self._nc = self._nc, None
            await nc.drain()

    @property
    def nc(self) -> NatsClient:
        if self._nc is None:
            raise Unavailable("WardenClient is not connected; use `async with WardenClient(...)`")
        return self._nc

    async def call(
        self,
        tool: str,
        arguments: dict[str, Any] | None = None,
        *,
        user: str | None = None,
        timeout_s: float | None = None,
    ) -> ToolCallResult:
        timeout = timeout_s or self.timeout_s
        # wait_s: a call held for approval past our timeout is abandoned at the proxy
        req = ToolCall(tool=tool, arguments=arguments or {}, user=user, wait_s=timeout)
        # with a NATS user, the subject names it: the proxy records that user as the actor
        subject = calls_subject(self.root, self.profile, self.user)
        msg = await self._ask(
            subject,
            req.model_dump_json().encode(),
            timeout,
            f"no answer from Warden within {timeout:g}s",
            headers={"Warden-Caller": self.caller},
        )
        return decode_reply(msg.data, ToolCallResult)

    async def _ask(
        self, subject: str, body: bytes, timeout: float, late: str, headers: dict[str, str] | None = None
    ) -> Msg:
        """A request to the proxy (`bus.ask`); its NATS errors as Warden's (`late`: the
        timeout's message)."""
        self._fits(body, "the request")
        try:
            return await self._guarded([subject], ask(self.nc, subject, body, timeout=timeout, headers=headers))
        except NoRespondersError:
            raise Unavailable("no Warden proxy is answering; is it running?") from None
        except NatsTimeout:
            raise Timeout(late) from None

    def _fits(self, body: bytes, what: str) -> None:
        """Refuse a request the NATS server would not take (its max_payload, headers' room
        kept), before sending it: `TooLarge`, not a dropped connection or a timeout."""
        limit = self.nc.max_payload - HEADER_ROOM
        if len(body) > limit:
            raise TooLarge(
                f"{what} is {len(body):,} bytes, over the bus limit of {limit:,} bytes (the NATS server's "
                "max_payload): send less, or raise max_payload in the NATS server's configuration",
                size=len(body),
                limit=limit,
            )

    async def call_durable(
        self,
        tool: str,
        arguments: dict[str, Any] | None = None,
        *,
        idempotency_key: str,
        user: str | None = None,
        timeout_s: float | None = None,
    ) -> ToolCallResult:
        req = DurableCall(tool=tool, arguments=arguments or {}, user=user, idempotency_key=idempotency_key)
        fp = req.fingerprint()
        limit = timeout_s or self.timeout_s
        mine: asyncio.Queue[DurableResult] = asyncio.Queue()

        async def on_result(m: Msg) -> None:
            try:
                res = DurableResult.model_validate_json(m.data)
            except ValueError:
                return  # not a durable result: never someone else's outcome taken as ours
            # the subject is per key; the key decides, and the fingerprint (a proxy from before
            # sends none): a refusal of another call with this key is not our outcome
            if res.idempotency_key == idempotency_key and res.fingerprint in (None, fp):
                mine.put_nowait(res)

        results = durable_results_subject(self.root, self.profile, idempotency_key)
        # an older proxy publishes on the pre-hash subject (not one-to-one with keys)
        legacy = legacy_durable_results_subject(self.root, self.profile, idempotency_key)
        submit = durable_calls_subject(self.root, self.profile, self.user)

        async def run() -> ToolCallResult:
            subs = [await self.nc.subscribe(results, cb=on_result), await self.nc.subscribe(legacy, cb=on_result)]
            try:
                js = self.nc.jetstream()
                body = req.model_dump_json().encode()
                self._fits(body, "the durable call")
                ack = await js.publish(
                    submit,
                    body,
                    headers={"Nats-Msg-Id": f"{self.profile}:{idempotency_key}", "Warden-Caller": self.caller},
                    timeout=10,
                )
                if ack.duplicate:
                    # submitted before (the stream de-duplicated it): its outcome may be stored
                    # already, or it is still queued (no record yet) or running: then its result
                    # comes on the subscription; another call with this key is refused (`Conflict`)
                    done = await self._durable_status(idempotency_key, fp)
                    if done is not None:
                        return done
                try:
                    async with asyncio.timeout(limit):
                        got = await mine.get()
                except TimeoutError:
                    raise Timeout(
                        f"no result for durable call {idempotency_key!r} within {limit:g}s; "
                        "it is still queued or running — call again with the same key to get its result"
                    ) from None
            finally:
                for sub in subs:
                    await sub.unsubscribe()
            return _outcome(got)

        # a denied subscribe or submit fails the call at once (`Forbidden`), not at `limit`
        return await self._guarded([results, legacy, submit], run())

    async def _durable_status(self, key: str, fp: str) -> ToolCallResult | None:
        msg = await self._ask(
            durable_status_subject(self.root, self.profile),
            DurableStatus(idempotency_key=key, fingerprint=fp).model_dump_json().encode(),
            10,
            "no answer from Warden about a durable call's status within 10s",
        )
        try:
            res = decode_reply(msg.data, DurableResult)
        except NotFound:
            return None  # in the stream, not taken by a proxy yet
        if res.fingerprint not in (None, fp):
            raise Conflict(f"idempotency key {key!r} was already used for another call; use a new key for this call")
        if res.result is None and res.error is None:
            return None  # still queued or running
        return _outcome(res)


def _outcome(res: DurableResult) -> ToolCallResult:
    if res.error is not None:
        raise from_reply_error(ReplyError.model_validate(res.error))
    if res.result is None:
        raise Unavailable("the durable call has no stored outcome")
    return res.result
