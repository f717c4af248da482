"""The Prometheus series every service exports, in one place (an SRE's dashboard and alert
rules are written against these names; see docs/observability.md).

Label sets are bounded: a label whose values come from the outside (tool, connector, NATS
subject) keeps at most `BoundedLabel.limit` distinct values per process; the rest are
counted under `other`. So a catalog of ten thousand tools cannot blow up the scrape.

Each service is its own process, so the series of a service are the ones it touches; the
definitions live here so that two services never spell one name two ways.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

from prometheus_client import Counter, Gauge, Histogram

from warden_common.contracts.base import VERSION

__all__ = [
    "APPROVALS_WAITING",
    "APPROVAL_WAIT",
    "BREAKER_STATE",
    "CALL_DURATION",
    "CONNECTORS_NEEDING_ATTENTION",
    "CONSENT_WAIT",
    "CREDENTIAL_ISSUES",
    "NATS_HANDLE",
    "NATS_PROBE",
    "NATS_REQUEST",
    "OTHER",
    "REGISTRY_INDEX_TOOLS",
    "SEARCH_DURATION",
    "TOKEN_REFRESHES",
    "UPSTREAM_ERRORS",
    "BoundedLabel",
    "connector_label",
    "error_outcome",
    "subject_label",
    "timed",
    "tool_label",
]

P = ParamSpec("P")
T = TypeVar("T")

OTHER = "other"

# seconds; a tool call spans a cached local answer (~1 ms) to a slow upstream (the 60 s timeout)
_CALL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# NATS round trips between services: sub-millisecond to the request timeout
_NATS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# a person deciding or consenting: seconds to the approval / consent timeout
_WAIT_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)


class BoundedLabel:
    """Map outside values to at most `limit` label values; the rest become `other`.

    The first `limit` distinct values seen keep their name for the life of the process (a
    series, once exported, should not change meaning); values are cut to 100 characters."""

    def __init__(self, limit: int = 200) -> None:
        self.limit = limit
        self._seen: set[str] = set()

    def __call__(self, value: str | None) -> str:
        if not value:
            return "none"
        value = value[:100]
        if value in self._seen:
            return value
        if len(self._seen) >= self.limit:
            return OTHER
        self._seen.add(value)
        return value


def timed(
    hist: Histogram, *, ok: Callable[[Any], str] = lambda _: "ok", error: Callable[[BaseException], str]
) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Awaitable[T]]]:
    """Observe how long an async function ran, with `outcome` = `ok(result)` or `error(exc)`
    (a decorator, so a wait is measured without touching its body)."""

    def wrap(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        @functools.wraps(fn)
        async def timed_fn(*args: P.args, **kwargs: P.kwargs) -> T:
            started = time.perf_counter()
            try:
                result = await fn(*args, **kwargs)
            except BaseException as e:
                hist.labels(error(e)).observe(time.perf_counter() - started)
                raise
            hist.labels(ok(result)).observe(time.perf_counter() - started)
            return result

        return timed_fn

    return wrap


def error_outcome(e: BaseException) -> str:
    """A wait's outcome from what ended it: the typed error's code, `cancelled`, or `error`."""
    code = getattr(e, "code", None)
    if code is not None:
        return str(code)[:40]
    return "cancelled" if isinstance(e, BaseException) and not isinstance(e, Exception) else "error"


tool_label = BoundedLabel(200)
connector_label = BoundedLabel(100)
_subject_bound = BoundedLabel(60)
_subject_cache: dict[str, str] = {}


def subject_label(subject: str) -> str:
    """A NATS subject as a label: the part after `<root>.v1.`, with the per-profile and
    per-key parts folded (`calls.*`, `durable.results.*`), so it names the kind of request."""
    hit = _subject_cache.get(subject)
    if hit is not None:
        return hit
    parts = subject.split(".")
    tail = parts[parts.index(VERSION) + 1 :] if VERSION in parts else parts
    if tail and tail[0] == "calls":
        label = "calls.*"
    elif len(tail) >= 2 and tail[0] == "durable":
        label = f"durable.{tail[1]}.*"
    elif tail and tail[0].startswith("_INBOX"):
        label = "_INBOX"
    else:
        label = ".".join(tail[:2])
    label = _subject_bound(label)
    if len(_subject_cache) < 10_000:
        _subject_cache[subject] = label
    return label


# -- proxy: the call ---------------------------------------------------------------------
CALL_DURATION = Histogram(
    "warden_proxy_call_duration_seconds",
    "tool calls through the proxy, from request to answer (approval and consent waits included); "
    "outcome: ok, error (the tool said isError), denied (grant or arguments), failed (any other error)",
    ["tool", "connector", "outcome"],
    buckets=_CALL_BUCKETS,
)
UPSTREAM_ERRORS = Counter(
    "warden_proxy_upstream_errors_total",
    "tool calls an upstream MCP server failed; kind: unauthorized (it refused the credential, after one retry), "
    "error (unreachable, timeout, HTTP error, malformed answer)",
    ["connector", "kind"],
)
BREAKER_STATE = Gauge(
    "warden_proxy_breaker_state",
    "circuit breaker of a connector's upstream: 0 closed, 1 open (calls refused until the cool-down ends)",
    ["connector"],
)
APPROVALS_WAITING = Gauge(
    "warden_proxy_approvals_waiting", "calls this replica holds for an approval now (summed over replicas: the queue)"
)
CONNECTORS_NEEDING_ATTENTION = Gauge(
    "warden_connectors_needing_attention",
    "1 for a connector an admin must act on (pending, reauth_required, expired, error, or more scopes needed)",
    ["connector"],
)
APPROVAL_WAIT = Histogram(
    "warden_proxy_approval_wait_seconds",
    "how long calls were held for a person's approval; outcome: approved, or what ended the wait "
    "(approval_rejected, approval_timeout, cancelled: the caller went away, ...)",
    ["outcome"],
    buckets=_WAIT_BUCKETS,
)
CONSENT_WAIT = Histogram(
    "warden_proxy_consent_wait_seconds",
    "how long calls waited for an end user's consent; outcome: connected, timeout, or what ended the "
    "wait (consent_failed, cancelled, ...)",
    ["outcome"],
    buckets=_WAIT_BUCKETS,
)

# -- connectors --------------------------------------------------------------------------
CREDENTIAL_ISSUES = Counter(
    "warden_connectors_credential_requests_total",
    "credential requests answered (credentials.get); outcome: ok or the typed refusal's code "
    "(consent_required, reauth_required, expired, disconnected, not_found, ...)",
    ["connector", "outcome"],
)
TOKEN_REFRESHES = Counter(
    "warden_connectors_token_refreshes_total",
    "OAuth token refreshes; outcome: refreshed, refresh_failed (provider down: the held token is kept "
    "while valid), reauth_required (the provider refused the refresh token)",
    ["connector", "outcome"],
)

# -- registry ----------------------------------------------------------------------------
SEARCH_DURATION = Histogram(
    "warden_registry_search_duration_seconds",
    "tool_search answered by the registry; mode: hybrid, lexical, none (nothing the profile may see), error",
    ["mode"],
    buckets=_NATS_BUCKETS,
)
REGISTRY_INDEX_TOOLS = Gauge(
    "warden_registry_search_index_tools",
    "tools in this replica's search index; index: lexical, hybrid",
    ["index"],
)

# -- NATS (every service) ----------------------------------------------------------------
NATS_REQUEST = Histogram(
    "warden_nats_request_duration_seconds",
    "requests this service sent over NATS, to the answer; outcome: ok, error (a typed error reply), "
    "timeout, no_responders",
    ["subject", "outcome"],
    buckets=_NATS_BUCKETS,
)
NATS_HANDLE = Histogram(
    "warden_nats_handle_duration_seconds",
    "requests this service answered over NATS; outcome: ok, error (a typed error), invalid, internal",
    ["subject", "outcome"],
    buckets=_NATS_BUCKETS,
)
NATS_PROBE = Gauge(
    "warden_nats_rtt_seconds",
    "round trip to the NATS server measured by the last readiness probe (-1: no answer in time)",
)
