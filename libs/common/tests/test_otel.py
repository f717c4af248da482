"""OpenTelemetry spans (issue 14): optional, off by default, on Warden's own trace ids."""

import os
import subprocess
import sys

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from warden_common import otel
from warden_common.contracts import CREDENTIALS_GET, Credential, CredentialRequest
from warden_common.errors import NotFound
from warden_common.tracing import begin_call, current_span_id, inbound_http, set_trace_id


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    otel.install("test", exporter)
    yield exporter
    otel.reset()


async def test_request_and_handler_spans_share_the_warden_trace_as_parent_and_child(spans, buses):
    a, b = buses
    seen = {}

    async def handler(req: CredentialRequest) -> Credential:
        seen["span"] = current_span_id()  # the handler span's id: the parent of what it sends on
        if req.connector == "missing":
            raise NotFound("no connector named 'missing'")
        return Credential(connector=req.connector, url="https://example.test/mcp", headers={"X": "s3cr3t"})

    await a.serve(CREDENTIALS_GET, handler)
    tid = "ab" * 16
    set_trace_id(tid)
    await b.request(CREDENTIALS_GET, CredentialRequest(connector="ok"))
    done = spans.get_finished_spans()
    client = next(s for s in done if s.kind == SpanKind.CLIENT)
    server = next(s for s in done if s.kind == SpanKind.SERVER)
    assert format(client.context.trace_id, "032x") == tid == format(server.context.trace_id, "032x")
    assert client.parent is None  # the call's root here
    assert server.parent is not None and server.parent.span_id == client.context.span_id
    assert format(server.context.span_id, "016x") == seen["span"]
    assert client.attributes["outcome"] == "ok" and server.attributes["outcome"] == "ok"
    assert client.attributes["messaging.destination.name"] == server.attributes["messaging.destination.name"]
    assert "s3cr3t" not in repr([dict(s.attributes) for s in done])
    assert current_span_id() is None  # closed spans leave no parent behind

    spans.clear()
    with pytest.raises(NotFound):
        await b.request(CREDENTIALS_GET, CredentialRequest(connector="missing"))
    done = spans.get_finished_spans()
    outcomes = {s.kind: s.attributes["outcome"] for s in done}
    assert outcomes == {SpanKind.CLIENT: "not_found", SpanKind.SERVER: "error"}


async def test_a_span_inside_another_is_its_child_and_sets_the_traceparent_parent(spans):
    set_trace_id("cd" * 16)
    with otel.span("outer") as outer:
        from warden_common.tracing import traceparent

        header = traceparent("cd" * 16)
        with otel.span("inner") as inner:
            assert inner.parent.span_id == outer.context.span_id
    assert header.split("-")[2] == format(outer.context.span_id, "016x")


async def test_a_span_outside_any_other_in_a_callers_trace_is_the_callers_child(spans):
    caller = "12" * 8
    inbound_http({"headers": [(b"traceparent", f"00-{'ef' * 16}-{caller}-01".encode())]})
    begin_call()  # the call goes on in the caller's trace
    with otel.span("look-up") as s:
        assert format(s.context.trace_id, "032x") == "ef" * 16
        assert s.parent is not None and format(s.parent.span_id, "016x") == caller
    set_trace_id("01" * 16)  # another trace in the same context: the caller's span is not its parent
    with otel.span("elsewhere") as s:
        assert s.parent is None
    begin_call(f"00-{'ab' * 16}-{'34' * 8}-01")  # a call's own traceparent wins over the request's
    with otel.span("call") as s:
        assert format(s.parent.span_id, "016x") == "34" * 8


def test_wanted_reads_the_standard_variables():
    assert not otel.wanted({})
    assert otel.wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert otel.wanted({"OTEL_TRACES_EXPORTER": "otlp"})
    assert not otel.wanted({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"})


def test_without_otel_env_no_tracer_provider_is_installed(nats_url):
    """The zero-cost path: a Bus round trip with no OTEL_* set imports nothing of OpenTelemetry."""
    code = f"""
import asyncio, sys, uuid
from warden_common import otel
from warden_common.bus import Bus
from warden_common.contracts import CREDENTIALS_GET, Credential, CredentialRequest, Service
from warden_common.settings import NatsSettings

async def main():
    s = NatsSettings(url={nats_url!r}, root="t" + uuid.uuid4().hex[:10])
    a, b = Bus(s, Service.connectors), Bus(s, Service.proxy)
    await a.connect(); await b.connect()
    async def h(req):
        return Credential(connector=req.connector, url="https://example.test/mcp", headers={{}})
    await a.serve(CREDENTIALS_GET, h)
    await b.request(CREDENTIALS_GET, CredentialRequest(connector="ok"))
    await a.close(); await b.close()
    assert not otel.enabled()
    loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
    assert not loaded, loaded
    print("off")

asyncio.run(main())
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "off"
