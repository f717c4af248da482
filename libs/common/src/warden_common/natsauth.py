"""Who may do what on NATS: the one definition of every Warden NATS user and its subject
permissions, used by the embedded run's server config (`warden run`) and rendered into the
Kubernetes manifests (`warden nats-config`, checked against `deploy/` by a test).

- Each user has its own reply inbox, `_INBOX_<user>.>` (`inbox_prefix`); it may subscribe to
  that inbox only, so a reply (a credentials reply to the proxy above all) reaches the one
  user that asked. `Bus` and `WardenClient` connect with that prefix.
- Only the proxy may ask for credentials and users' connections; only audit may consume the
  whole events stream (the registry has one durable consumer of its own, of
  `connector.removed`, and may touch no other); an internal service may publish tool calls
  only on its profile's subjects — those naming its own user, which the proxy records as the
  actor — and read only its profile's durable results.
- `allow_responses` (publishing to the reply subject of a request received) only for the
  services that answer requests: connectors, registry, proxy.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from warden_common.contracts.calls import durable_calls_stream_name
from warden_common.contracts.events import REGISTRY_REMOVALS_CONSUMER, events_stream_name

__all__ = [
    "SERVICE_USERS",
    "inbox_prefix",
    "internal_service_permissions",
    "permissions",
    "service_permissions",
    "users",
]

SERVICE_USERS = ("connectors", "registry", "proxy", "audit")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")  # one NATS subject token, no wildcards


def _check(kind: str, value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(f"NATS {kind} {value!r} must be 1-64 letters, digits, '_' or '-' (one subject token)")
    return value


def inbox_prefix(user: str | None) -> str:
    """The reply-inbox prefix of a NATS user (`_INBOX_<user>`); `_INBOX` with no user (an
    unauthenticated development server, where no permissions apply)."""
    return f"_INBOX_{_check('user', user)}" if user else "_INBOX"


def _js_stream(stream: str) -> list[str]:
    return [
        "$JS.API.INFO",
        f"$JS.API.STREAM.INFO.{stream}",
        f"$JS.API.STREAM.CREATE.{stream}",
        f"$JS.API.STREAM.UPDATE.{stream}",
    ]


def _consume(stream: str) -> list[str]:
    return [
        f"$JS.API.CONSUMER.*.{stream}",
        f"$JS.API.CONSUMER.*.{stream}.>",
        f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.>",
        f"$JS.API.CONSUMER.MSG.NEXT.{stream}.>",
        f"$JS.ACK.{stream}.>",
    ]


def _consume_one(stream: str, consumer: str) -> list[str]:
    """Create, look up, pull from and ack one named durable consumer of a stream, and no other."""
    return [
        f"$JS.API.CONSUMER.INFO.{stream}.{consumer}",
        f"$JS.API.CONSUMER.CREATE.{stream}.{consumer}",
        f"$JS.API.CONSUMER.CREATE.{stream}.{consumer}.>",
        f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.{consumer}",
        f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}",
        f"$JS.ACK.{stream}.{consumer}.>",
    ]


def service_permissions(root: str, user: str) -> dict[str, Any]:
    """The permissions of one of Warden's own services (`SERVICE_USERS`)."""
    v = f"{root}.v1"
    events = events_stream_name(root)
    calls = durable_calls_stream_name(root)
    own_inbox = [f"{inbox_prefix(user)}.>"]
    if user == "connectors":
        # connection tests go through the proxy, the single egress to upstream MCP servers
        pub = [f"{v}.events.connectors.>", f"{v}.upstream.list_tools", *_js_stream(events)]
        sub = [f"{v}.credentials.get", f"{v}.connections.*", f"{v}.events.connectors.>"]
    elif user == "registry":
        pub = [
            f"{v}.upstream.list_tools",
            f"{v}.events.registry.>",
            *_js_stream(events),
            *_consume_one(events, REGISTRY_REMOVALS_CONSUMER),
        ]
        sub = [f"{v}.registry.>", f"{v}.events.registry.>", f"{v}.events.proxy.>", f"{v}.events.connectors.>"]
    elif user == "proxy":
        pub = [
            f"{v}.credentials.get",
            f"{v}.connections.*",
            f"{v}.registry.>",
            f"{v}.events.proxy.>",
            f"{v}.durable.results.>",
            *_js_stream(events),
            f"$JS.API.STREAM.INFO.{calls}",
            f"$JS.API.STREAM.CREATE.{calls}",
            f"$JS.API.STREAM.UPDATE.{calls}",
            *_consume(calls),
        ]
        sub = [
            f"{v}.calls.*",
            f"{v}.calls.*.*",
            f"{v}.upstream.list_tools",
            f"{v}.durable.status.*",
            f"{v}.events.registry.>",
            f"{v}.events.connectors.>",
            f"{v}.events.proxy.>",
        ]
    elif user == "audit":
        pub = [*_js_stream(events), *_consume(events)]
        sub = []
    else:
        raise ValueError(f"{user!r} is not one of Warden's services {SERVICE_USERS}")
    return {
        "publish": {"allow": pub},
        "subscribe": {"allow": [*sub, *own_inbox]},
        "allow_responses": user in ("connectors", "registry", "proxy"),
    }


def internal_service_permissions(root: str, user: str, profile: str) -> dict[str, Any]:
    """An internal service that may call the tools of one profile, and nothing else.

    It publishes its calls on subjects that end in its own user name (`calls.<profile>.<user>`,
    `durable.calls.<profile>.<user>`) and may publish on no other user's: the proxy records that
    name as the call's actor, attested by the server. The older subjects without a user
    (`calls.<profile>`) stay open for clients from before, recorded as `profile:<profile>`."""
    v = f"{root}.v1"
    _check("profile", profile)
    _check("user", user)
    return {
        "publish": {
            "allow": [
                f"{v}.calls.{profile}.{user}",
                f"{v}.durable.calls.{profile}.{user}",
                f"{v}.calls.{profile}",
                f"{v}.durable.calls.{profile}",
                f"{v}.durable.status.{profile}",
            ]
        },
        "subscribe": {"allow": [f"{v}.durable.results.{profile}.>", f"{inbox_prefix(user)}.>"]},
        "allow_responses": False,
    }


def permissions(root: str, user: str, internal: Mapping[str, str] | None = None) -> dict[str, Any]:
    if user in SERVICE_USERS:
        return service_permissions(root, user)
    if internal and user in internal:
        return internal_service_permissions(root, user, internal[user])
    raise ValueError(f"unknown NATS user {user!r}")


def users(root: str, passwords: Mapping[str, str], internal: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """The `authorization.users` list of a nats-server config: Warden's four services and each
    internal service (`internal`: user -> the profile it may call). `passwords` gives each
    user's password, or a `$VARIABLE` the server reads from its environment."""
    internal = dict(internal or {})
    for u, p in internal.items():
        if u in SERVICE_USERS:
            raise ValueError(f"internal service {u!r} has the name of one of Warden's services")
        _check("user", u)
        _check("profile", p)
    names = [*SERVICE_USERS, *internal]
    missing = [u for u in names if u not in passwords]
    if missing:
        raise ValueError(f"no password for NATS user(s) {', '.join(missing)}")
    return [{"user": u, "password": passwords[u], "permissions": permissions(root, u, internal)} for u in names]
