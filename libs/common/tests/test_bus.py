import asyncio
import contextlib
import socket
import uuid

import nats
import nats.js.errors
import pytest
from warden_client import WardenClient
from warden_common.bus import Bus
from warden_common.contracts import (
    CREDENTIALS_GET,
    Actor,
    Credential,
    CredentialRequest,
    ErrorCode,
    Event,
    EventRefs,
    EventType,
    Service,
    events_stream_name,
)
from warden_common.errors import BadInput, NotFound, RemoteError, Unavailable
from warden_common.settings import NatsSettings
from warden_common.tracing import current_trace_id, set_trace_id


async def test_typed_request_gets_typed_result_and_trace_travels(buses):
    a, b = buses
    seen = {}

    async def handler(req: CredentialRequest) -> Credential:
        seen["trace"] = current_trace_id()
        if req.connector == "missing":
            raise NotFound("no connector named 'missing'")
        if req.connector == "refused":
            from warden_common.errors import WardenError

            raise WardenError("consent needed", code=ErrorCode.consent_required, details={"consent_url": "https://x"})
        return Credential(connector=req.connector, url="https://example.test/mcp", headers={"X": "y"})

    await a.serve(CREDENTIALS_GET, handler)
    set_trace_id("ab" * 16)
    cred = await b.request(CREDENTIALS_GET, CredentialRequest(connector="ok"))
    assert cred.headers == {"X": "y"} and seen["trace"] == "ab" * 16
    with pytest.raises(NotFound):
        await b.request(CREDENTIALS_GET, CredentialRequest(connector="missing"))
    with pytest.raises(RemoteError) as e:
        await b.request(CREDENTIALS_GET, CredentialRequest(connector="refused"))
    assert e.value.code == ErrorCode.consent_required and e.value.details["consent_url"] == "https://x"
    assert e.value.http_status == 409  # an HTTP edge relaying it says "conflict", not "server error"


async def test_malformed_request_gets_an_invalid_error_without_echoing_values(buses):
    a, b = buses

    async def handler(req: CredentialRequest) -> Credential:
        raise AssertionError("not reached")

    await a.serve(CREDENTIALS_GET, handler)
    # a raw request, as a foreign client would send it; like Bus.request, ask again if the
    # server has not routed the new interest yet (seen once on a busy machine)
    async with asyncio.timeout(10):
        while True:
            try:
                reply = await b.nc.request(CREDENTIALS_GET.on(b.root), b'{"connector": "BAD NAME s3cr3t"}', timeout=2)
                break
            except nats.errors.NoRespondersError:
                await asyncio.sleep(0.05)
    assert b'"invalid"' in reply.data and b"s3cr3t" not in reply.data
    from warden_common.rpc import decode_reply

    with pytest.raises(BadInput):
        decode_reply(reply.data, Credential)


async def test_no_responder_is_a_clear_unavailable_error(buses):
    _, b = buses
    with pytest.raises(Unavailable, match="no service is answering"):
        await b.request(CREDENTIALS_GET, CredentialRequest(connector="x"))


async def test_a_responder_that_subscribes_moments_later_still_answers(buses):
    """No responders means nobody got the request, so it is asked again (within the timeout):
    a replica restarting, or a subscription the server routes to a moment late."""
    a, b = buses

    async def handler(req: CredentialRequest) -> Credential:
        return Credential(connector=req.connector, url="https://example.test/mcp", headers={})

    async def serve_later() -> None:
        await asyncio.sleep(0.1)
        await a.serve(CREDENTIALS_GET, handler)

    late = asyncio.create_task(serve_later())
    cred = await b.request(CREDENTIALS_GET, CredentialRequest(connector="late"))
    await late
    assert cred.connector == "late"


async def test_events_are_deduplicated_by_id_in_the_stream(buses):
    a, _ = buses
    ev = Event(type="connector.created", source=Service.connectors, data={"token": "sekrit", "n": 1})
    assert ev.data == {"token": "[redacted]", "n": 1}
    a.emit(ev)
    a.emit(ev)
    await a.publish_event_now(ev)
    async with asyncio.timeout(5):
        await a._outbox.join()
    info = await a.nc.jetstream().stream_info(a.events_stream)
    assert info.state.messages == 1


async def test_emit_event_publishes_the_contracts_event_with_its_id_and_trace(buses):
    a, _ = buses
    set_trace_id("0af7651916cd43dd8448eb211c80319c")
    refs = EventRefs(tool="notion__search", call_id="c" * 32)
    a.emit_event(EventType.call_requested, actor=Actor(kind="agent", id="k1"), refs=refs, data={"api_key": "sekrit"})
    # what event_json cannot prove (a status past 40 characters) takes the model, which refuses it
    with pytest.raises(ValueError):
        a.emit_event(EventType.call_completed, actor=None, refs=refs, status="s" * 41)
    async with asyncio.timeout(5):
        await a._outbox.join()
    js = a.nc.jetstream()
    sub = await js.pull_subscribe(f"{a.root}.v1.events.>", durable=None, stream=a.events_stream)
    [msg] = await sub.fetch(1, timeout=5)
    ev = Event.model_validate_json(msg.data)
    assert msg.subject == f"{a.root}.v1.events.connectors.call.requested"
    assert msg.headers["Nats-Msg-Id"] == ev.id
    assert msg.headers["traceparent"].split("-")[1] == ev.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert (ev.type, ev.source, ev.refs, ev.actor) == (
        "call.requested",
        Service.connectors,
        refs,
        Actor(kind="agent", id="k1"),
    )
    assert ev.data == {"api_key": "[redacted]"} and b"sekrit" not in msg.data
    info = await js.stream_info(a.events_stream)
    assert info.state.messages == 1


async def test_an_event_stays_queued_until_a_stream_stores_it(nats_url):
    """No stream yet: the publish is answered 'no responders', the event is kept and resent
    (with backoff) until the stream exists and acknowledges it; exactly one copy is stored."""
    root = "t" + uuid.uuid4().hex[:10]
    bus = Bus(NatsSettings(url=nats_url, root=root), Service.proxy, event_linger_s=0)
    await bus.connect()
    try:
        bus.emit_event(EventType.call_requested, actor=None, refs=EventRefs(call_id="c1"), data={"n": 1})
        await asyncio.sleep(0.6)
        assert bus.outbox_size == 0 and bus._outbox._unfinished_tasks == 1  # taken, not yet stored
        await bus.ensure_events_stream()
        async with asyncio.timeout(10):
            await bus._outbox.join()
        info = await bus.nc.jetstream().stream_info(bus.events_stream)
        assert info.state.messages == 1
        assert not bus._waiting  # no ack left waiting
    finally:
        await bus.close()
        nc = await nats.connect(nats_url)
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await nc.jetstream().delete_stream(events_stream_name(root))
        await nc.close()


async def test_concurrent_responders_answer_while_an_earlier_request_still_runs(buses):
    a, b = buses
    second_arrived = asyncio.Event()
    seen: list[str] = []

    async def handler(req: CredentialRequest) -> Credential:
        seen.append(req.connector)
        if req.connector == "first":
            await second_arrived.wait()  # answered only once the second request is in
        else:
            second_arrived.set()
        return Credential(connector=req.connector, url="https://example.test/mcp", headers={})

    await a.serve(CREDENTIALS_GET, handler, concurrency=4)
    async with asyncio.timeout(5):
        first, second = await asyncio.gather(
            b.request(CREDENTIALS_GET, CredentialRequest(connector="first")),
            b.request(CREDENTIALS_GET, CredentialRequest(connector="second")),
        )
    assert (first.connector, second.connector) == ("first", "second") and sorted(seen) == ["first", "second"]


async def test_close_waits_for_the_requests_being_answered(nats_url):
    root = "t" + uuid.uuid4().hex[:10]
    a = Bus(NatsSettings(url=nats_url, root=root), Service.connectors)
    b = Bus(NatsSettings(url=nats_url, root=root, request_timeout_s=5), Service.proxy)
    await a.connect()
    await b.connect()
    started = asyncio.Event()

    async def handler(req: CredentialRequest) -> Credential:
        started.set()
        await asyncio.sleep(0.2)
        return Credential(connector=req.connector, url="https://example.test/mcp", headers={})

    try:
        await a.serve(CREDENTIALS_GET, handler, concurrency=4)
        pending = asyncio.create_task(b.request(CREDENTIALS_GET, CredentialRequest(connector="slow")))
        async with asyncio.timeout(5):
            await started.wait()
            await a.close()  # drains: the request in flight is still answered
            assert (await pending).connector == "slow"
    finally:
        await b.close()
        nc = await nats.connect(nats_url)  # the run's events stream, if a bus made one
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await nc.jetstream().delete_stream(events_stream_name(root))
        await nc.close()


async def test_a_url_listing_several_servers_connects_to_one_that_answers(nats_url):
    with socket.socket() as s:  # a port nothing listens on: the client moves on to the next server
        s.bind(("127.0.0.1", 0))
        closed = f"nats://127.0.0.1:{s.getsockname()[1]}"
    settings = NatsSettings(url=f"{closed}, {nats_url}", root="t" + uuid.uuid4().hex[:10], connect_timeout_s=1)
    assert settings.servers == [closed, nats_url]
    bus = Bus(settings, Service.proxy)
    await bus.connect()
    try:
        assert bus.nc is not None and bus.nc.is_connected
    finally:
        await bus.close()
    async with WardenClient(nats_url=f"{closed},{nats_url}", profile="p", root=settings.root) as client:
        assert client.nc.is_connected


def test_a_url_naming_no_server_is_refused():
    with pytest.raises(ValueError, match="names no NATS server"):
        NatsSettings(url=" , ")
