"""OpenTelemetry spans: optional (the `otel` extra of warden-common), off by default.

On only when the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`)
is set, or `OTEL_TRACES_EXPORTER` is set to something other than `none` (`otlp`, or `console`).
Off, nothing of OpenTelemetry is imported and `span()` is a shared no-op context: no provider,
no cost beyond one global read.

A span's trace id is Warden's own (`warden_common.tracing`): the provider's id generator
hands out the current trace id, and the parent is the span id `tracing` holds (the open span
of this process, or the `traceparent` parent that came in), so log lines, audit events and
spans agree. Inside a span its id is the parent of the `traceparent` sent onwards (NATS
headers, the upstream request), which makes the next hop's span its child.

The exporter is configured the standard way (`OTEL_EXPORTER_OTLP_*`, `OTEL_SERVICE_NAME`,
`OTEL_RESOURCE_ATTRIBUTES`), read by the OpenTelemetry SDK itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any

from warden_common import tracing

__all__ = ["enabled", "install", "reset", "setup", "span", "wanted"]

log = logging.getLogger(__name__)

_tracer: Any = None  # an opentelemetry Tracer once set up; None = off
_provider: Any = None
_NOOP = contextlib.nullcontext()


def wanted(env: Mapping[str, str] | None = None) -> bool:
    """Whether the environment asks for traces (the standard OTEL_* variables)."""
    env = os.environ if env is None else env
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def enabled() -> bool:
    return _tracer is not None


def setup(service: str) -> bool:
    """Install the tracer provider when the environment asks for it (once per process).
    Returns whether spans are on. Asked for without the `otel` extra installed: a start-up
    error that says so (fails closed rather than silently dropping the traces asked for)."""
    if _tracer is not None or not wanted():
        return _tracer is not None
    try:
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
    except ImportError as e:
        raise RuntimeError(
            "OTEL_* asks for traces but OpenTelemetry is not installed: install warden-common[otel]"
        ) from e
    kind = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() or "otlp"
    exporter: SpanExporter
    if kind == "console":
        exporter = ConsoleSpanExporter()
    elif kind == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()  # endpoint, headers, timeout from OTEL_EXPORTER_OTLP_*
    else:
        raise RuntimeError(f"OTEL_TRACES_EXPORTER={kind!r} is not supported here (otlp, console or none)")
    _install(service, BatchSpanProcessor(exporter))
    log.info("OpenTelemetry traces on (%s exporter)", kind)
    return True


def install(service: str, exporter: Any) -> None:
    """Test hook: spans go to `exporter` (e.g. an InMemorySpanExporter) as each one ends."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    _install(service, SimpleSpanProcessor(exporter))


def reset() -> None:
    """Test hook: tracing off again (the provider is shut down)."""
    global _tracer, _provider
    if _provider is not None:
        _provider.shutdown()
    _tracer = _provider = None


def _install(service: str, processor: Any) -> None:
    global _tracer, _provider
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    class _WardenIds(RandomIdGenerator):
        """A root span's trace id is the call's Warden trace id."""

        def generate_trace_id(self) -> int:
            tid = tracing.current_trace_id()
            return int(tid, 16) if tid else super().generate_trace_id()

    attrs = {"service.name": os.environ.get("OTEL_SERVICE_NAME") or f"warden-{service}"}
    provider = TracerProvider(resource=Resource.create(attrs), id_generator=_WardenIds())
    provider.add_span_processor(processor)
    # our own provider, not the global one: Warden's spans never depend on (or change) what
    # another library in the process set globally
    _provider, _tracer = provider, provider.get_tracer("warden")


def span(
    name: str, *, kind: str = "internal", parent: str | None = None, attributes: Mapping[str, Any] | None = None
) -> contextlib.AbstractContextManager[Any]:
    """A span named `name` under the current Warden trace (a no-op context when off).
    `parent` is a span id to continue (a received `traceparent`'s); by default the open span,
    else the caller's span when the trace is the caller's (`tracing.call_parent`)."""
    if _tracer is None:
        return _NOOP
    return _span(name, kind, parent, attributes)


@contextlib.contextmanager
def _span(name: str, kind: str, parent: str | None, attributes: Mapping[str, Any] | None) -> Iterator[Any]:
    from opentelemetry import trace

    tid = tracing.ensure_trace_id()
    # the open span, else the caller's (a trace that came in with a `traceparent`): a span in a
    # continued trace is never a second root beside the caller's
    parent = parent or tracing.current_span_id() or tracing.call_parent()
    ctx = None
    if parent is not None:
        remote = trace.SpanContext(
            trace_id=int(tid, 16),
            span_id=int(parent, 16),
            is_remote=True,
            trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
        )
        ctx = trace.set_span_in_context(trace.NonRecordingSpan(remote))
    else:
        ctx = trace.set_span_in_context(trace.INVALID_SPAN)  # a root: never an ambient global span
    with _tracer.start_as_current_span(
        name,
        context=ctx,
        kind=_KINDS[kind],
        attributes=dict(attributes or {}),
        # an exception's message may quote input: the span records its type only
        record_exception=False,
        set_status_on_exception=False,
    ) as s:
        token = tracing._span_id.set(format(s.get_span_context().span_id, "016x"))
        try:
            yield s
        except BaseException as e:
            s.set_status(trace.Status(trace.StatusCode.ERROR, type(e).__name__))
            raise
        finally:
            tracing._span_id.reset(token)


def _kinds() -> dict[str, Any]:
    from opentelemetry.trace import SpanKind

    return {
        "internal": SpanKind.INTERNAL,
        "client": SpanKind.CLIENT,
        "server": SpanKind.SERVER,
        "producer": SpanKind.PRODUCER,
        "consumer": SpanKind.CONSUMER,
    }


class _LazyKinds(dict[str, Any]):
    def __missing__(self, key: str) -> Any:
        self.update(_kinds())
        return dict.__getitem__(self, key)


_KINDS = _LazyKinds()
