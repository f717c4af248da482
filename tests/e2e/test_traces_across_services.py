"""OpenTelemetry across real processes (issue 14): a stack of its own whose services export
spans over OTLP/HTTP (configured by the standard OTEL_* variables only) to a real receiver,
and MCP tool calls through the proxy to a real upstream that needs a credential.

One call is one trace: the proxy's `tool call` span, its `credentials.get` NATS request span,
connectors' handler span for that request (another process, continued from the NATS headers),
the tool's look-up at the registry (a third process) and the proxy's upstream HTTP span all
carry one trace id, each the child of the span that caused it, each naming its own service;
no span's parent is missing from the trace. The audit events of the call carry that trace id
and the `tool call` span names the call id, so an SRE goes from either to the other. A
caller's `traceparent` makes the whole trace continue the caller's trace, under the caller's
span. With no OTEL_* set, a service process loads no OpenTelemetry SDK at all."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from support.admin import Admin, admin_client, agent
from support.infra import isolated_stack, wait_for
from support.otlp import Receiver, Span, otlp_receiver
from support.replicas import replica_log, second_proxy
from support.upstream import bearer_upstream
from warden_cli.embedded import Stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def traced(
    nats_url: str, admin_dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[Stack, Receiver]]:
    """A stack whose four services export spans to the receiver: the OTLP endpoint, and a
    short batch delay so that spans arrive soon after they end."""
    async with otlp_receiver() as rx:
        otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": rx.url, "OTEL_BSP_SCHEDULE_DELAY": "100"}
        env = {name: dict(otel) for name in ("connectors", "registry", "proxy", "audit")}
        async with isolated_stack(nats_url, admin_dsn, Path(tmp_path_factory.mktemp("traces")), env) as st:
            yield st, rx


def _one(trace: list[Span], service: str, name: str) -> Span | None:
    got = [s for s in trace if s.service == service and s.name == name]
    assert len(got) <= 1, got
    return got[0] if got else None


def _call_spans(rx: Receiver, tool: str) -> dict[str, Span] | None:
    """The spans of the one call of `tool`, once every one of them has arrived."""
    calls = [s for s in rx.spans if s.name == "tool call" and s.attributes.get("tool") == tool]
    if not calls:
        return None
    assert len(calls) == 1, calls
    trace = rx.trace(calls[0].trace_id)
    got = {
        "call": calls[0],
        "credential": _one(trace, "warden-proxy", "credentials.get request"),
        "credential_handled": _one(trace, "warden-connectors", "credentials.get handle"),
        "resolve": _one(trace, "warden-proxy", "registry.resolve request"),
        "resolve_handled": _one(trace, "warden-registry", "registry.resolve handle"),
        "upstream": _one(trace, "warden-proxy", "upstream tools/call"),
    }
    return got if all(got.values()) else None  # type: ignore[return-value]


def _assert_one_trace(spans: dict[str, Span], rx: Receiver) -> None:
    call = spans["call"]
    assert call.service == "warden-proxy" and call.kind == "server"
    assert {s.trace_id for s in spans.values()} == {call.trace_id}
    # the credential: asked by the proxy inside the call, answered by connectors (another
    # process) inside a span continued from the NATS headers, a child of the proxy's request
    cred, handled = spans["credential"], spans["credential_handled"]
    assert cred.parent == call.span_id and cred.kind == "client"
    assert handled.parent == cred.span_id and handled.kind == "server"
    assert cred.service != handled.service
    assert cred.attributes["messaging.destination.name"] == "credentials.get"
    assert cred.attributes["outcome"] == handled.attributes["outcome"] == call.attributes["outcome"] == "ok"
    # the registry's answer is a child of the proxy's request for it, in the same trace
    assert spans["resolve_handled"].parent == spans["resolve"].span_id
    # the upstream HTTP request, a child of the call
    assert spans["upstream"].parent == call.span_id and spans["upstream"].kind == "client"
    # every span of the trace is the child of one in it, or of the caller's: none dangles
    trace = rx.trace(call.trace_id)
    parents = {s.span_id for s in trace} | {call.parent}
    assert all(s.parent in parents for s in trace), [(s.service, s.name, s.parent) for s in trace]
    assert not any(s.error for s in trace)


async def _events_of(admin: Admin, call_id: str) -> list[dict[str, Any]]:
    async def done() -> list[dict[str, Any]] | None:
        items = (await admin.req("GET", "audit", "/v1/events", params={"call_id": call_id}))["items"]
        return items if any(e["type"] == "call.completed" for e in items) else None

    return await wait_for(done, timeout=30)  # type: ignore[no-any-return]


async def test_one_call_is_one_trace_from_the_proxy_through_connectors_to_the_upstream(
    traced: tuple[Stack, Receiver],
) -> None:
    stack, rx = traced
    async with bearer_upstream() as up, admin_client(stack) as admin:
        c, _, key = await admin.setup(up.url, up.token)
        tool = f"{c}__echo"
        async with agent(stack, key) as client:
            result = await client.call_tool(tool, {"text": "traced words"})
        assert not result.is_error, result

        spans = await rx.wait(lambda: _call_spans(rx, tool))
        _assert_one_trace(spans, rx)
        call = spans["call"]
        assert call.parent is None  # no caller's trace: the call starts one
        assert call.attributes["connector"] == c
        # what spans carry: names and outcomes, never the credential or the arguments
        assert up.token not in repr(rx.spans)
        assert "traced words" not in repr(rx.trace(call.trace_id))

        # from the call's span to its audit events, and from those back to the trace
        events = await _events_of(admin, call.attributes["call_id"])
        assert {e["type"] for e in events} >= {"call.requested", "call.completed"}
        assert {e["trace_id"] for e in events} == {call.trace_id}


async def test_a_callers_traceparent_makes_the_call_continue_its_trace(traced: tuple[Stack, Receiver]) -> None:
    stack, rx = traced
    trace_id, caller_span = os.urandom(16).hex(), os.urandom(8).hex()
    async with bearer_upstream() as up, admin_client(stack) as admin:
        c, _, key = await admin.setup(up.url, up.token)  # a new connector: nothing of it is cached
        tool = f"{c}__echo"
        headers = {"Authorization": f"Bearer {key}", "traceparent": f"00-{trace_id}-{caller_span}-01"}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=60) as http,
            Client(streamable_http_client(f"{stack.urls['proxy']}/mcp", http_client=http)) as client,
        ):
            result = await client.call_tool(tool, {"text": "continued"})
        assert not result.is_error, result

        spans = await rx.wait(lambda: _call_spans(rx, tool))
        call = spans["call"]
        assert call.trace_id == trace_id
        assert call.parent == caller_span
        _assert_one_trace(spans, rx)
        # what the proxy did outside the call span (the tool's look-up) is under the caller's span too
        assert spans["resolve"].parent in (caller_span, call.span_id)
        events = await _events_of(admin, call.attributes["call_id"])
        assert {e["trace_id"] for e in events} == {trace_id}


async def test_without_otel_env_a_service_process_loads_no_opentelemetry_sdk(stack: Stack) -> None:
    """The shared stack runs with no OTEL_*: a proxy replica started the same way, with its
    every import logged (PYTHONPROFILEIMPORTTIME), serves a call through the registry,
    connectors and the upstream, and never loads the SDK or an exporter. (FastAPI and mcp
    import the OpenTelemetry API themselves; with no provider set it records nothing.)"""
    if leaked := sorted(k for k in os.environ if k.startswith("OTEL_")):
        pytest.skip(f"the shared stack inherits {leaked} from this environment")
    async with bearer_upstream() as up, admin_client(stack) as admin:
        c, _, key = await admin.setup(up.url, up.token)
        async with second_proxy(stack, {"PYTHONPROFILEIMPORTTIME": "1"}) as url:
            async with agent(stack, key, base_url=url) as client:
                result = await client.call_tool(f"{c}__echo", {"text": "untraced"})
            assert not result.is_error, result
    imported = [
        line.rsplit("|", 1)[-1].strip()
        for line in replica_log(stack, url).read_text(errors="replace").splitlines()
        if line.startswith("import time:")
    ]
    assert {"warden_common.otel", "warden_proxy.lean"} <= set(imported)  # the import log is there
    loaded = sorted(m for m in imported if m.startswith(("opentelemetry.sdk", "opentelemetry.exporter")))
    assert not loaded, loaded
