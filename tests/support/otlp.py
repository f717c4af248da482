"""A real OTLP/HTTP trace receiver on a loopback port, in-process: what an OpenTelemetry
collector sees of Warden's spans.

It accepts `POST /v1/traces` with a protobuf `ExportTraceServiceRequest` (gzip or not), the
way the SDK's OTLP/HTTP exporter sends it, decodes it with `opentelemetry-proto` (what that
exporter depends on) and keeps every span with its resource's `service.name`.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from support.upstream import read_body, serve_asgi

__all__ = ["Receiver", "Span", "otlp_receiver"]


@dataclass(frozen=True)
class Span:
    service: str  # the resource's service.name
    name: str
    kind: str  # "server", "client", "internal", ...
    trace_id: str  # 32 hex digits
    span_id: str  # 16 hex digits
    parent: str | None  # the parent span id, None for a root
    attributes: dict[str, Any]
    error: bool


@dataclass
class Receiver:
    url: str = ""  # what OTEL_EXPORTER_OTLP_ENDPOINT is set to
    spans: list[Span] = field(default_factory=list)
    exports: int = 0  # export requests received
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def trace(self, trace_id: str) -> list[Span]:
        return [s for s in self.spans if s.trace_id == trace_id]

    async def wait(self, pred: Callable[[], Any], timeout: float = 30.0) -> Any:
        """Wait (bounded) until `pred()` is truthy, looking again after each export."""
        async with asyncio.timeout(timeout):
            while not (got := pred()):
                self._arrived.clear()
                await self._arrived.wait()
            return got

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            for phase in ("startup", "shutdown"):
                await receive()
                await send({"type": f"lifespan.{phase}.complete"})
            return
        body = await read_body(receive)
        headers = dict(scope.get("headers") or ())
        if scope["method"] != "POST" or scope["path"] != "/v1/traces":
            await _answer(send, 404, b"")
            return
        if headers.get(b"content-type") != b"application/x-protobuf":
            await _answer(send, 415, b"")
            return
        if headers.get(b"content-encoding") == b"gzip":
            body = gzip.decompress(body)
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
            ExportTraceServiceResponse,
        )

        req = ExportTraceServiceRequest()
        req.ParseFromString(body)
        for rs in req.resource_spans:
            service = _attrs(rs.resource.attributes).get("service.name", "")
            for ss in rs.scope_spans:
                for s in ss.spans:
                    self.spans.append(
                        Span(
                            service=service,
                            name=s.name,
                            kind=_KINDS.get(s.kind, str(s.kind)),
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent=s.parent_span_id.hex() or None,
                            attributes=_attrs(s.attributes),
                            error=s.status.code == 2,  # STATUS_CODE_ERROR
                        )
                    )
        self.exports += 1
        self._arrived.set()
        await _answer(send, 200, ExportTraceServiceResponse().SerializeToString())


_KINDS = {1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


def _attrs(kvs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in kvs:
        which = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, which) if which else None
    return out


async def _answer(send: Any, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/x-protobuf"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@asynccontextmanager
async def otlp_receiver() -> AsyncIterator[Receiver]:
    rx = Receiver()
    async with serve_asgi(rx) as port:
        rx.url = f"http://127.0.0.1:{port}"
        yield rx
