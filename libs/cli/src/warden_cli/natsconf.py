"""A NATS server config for the embedded run: JetStream on, loopback only, one user per
service with subject permissions (only the proxy may request credentials; only audit
may consume the events stream; an internal service may call only its profile)."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

__all__ = ["SERVICE_USERS", "nats_config", "new_passwords"]

SERVICE_USERS = ("connectors", "registry", "proxy", "audit", "demo-service")


def new_passwords() -> dict[str, str]:
    return {u: secrets.token_urlsafe(24) for u in SERVICE_USERS}


def _perms(root: str, stream: str, user: str, demo_profile: str) -> dict[str, object]:
    v = f"{root}.v1"
    calls = stream.removesuffix("_EVENTS") + "_CALLS"
    js_stream = [
        "$JS.API.INFO",
        f"$JS.API.STREAM.INFO.{stream}",
        f"$JS.API.STREAM.CREATE.{stream}",
        f"$JS.API.STREAM.UPDATE.{stream}",
    ]
    inbox = ["_INBOX.>"]
    if user == "connectors":
        # connection tests go through the proxy, the single egress
        pub = [f"{v}.events.connectors.>", f"{v}.upstream.list_tools", *js_stream]
        sub = [f"{v}.credentials.get", f"{v}.connections.*", f"{v}.events.connectors.>", *inbox]
    elif user == "registry":
        pub = [f"{v}.upstream.list_tools", f"{v}.events.registry.>", *js_stream]
        sub = [f"{v}.registry.>", f"{v}.events.registry.>", f"{v}.events.proxy.>", f"{v}.events.connectors.>", *inbox]
    elif user == "proxy":
        pub = [
            f"{v}.credentials.get",
            f"{v}.connections.*",
            f"{v}.registry.>",
            f"{v}.events.proxy.>",
            f"{v}.durable.results.>",
            *js_stream,
            f"$JS.API.STREAM.INFO.{calls}",
            f"$JS.API.STREAM.CREATE.{calls}",
            f"$JS.API.CONSUMER.*.{calls}",
            f"$JS.API.CONSUMER.*.{calls}.>",
            f"$JS.API.CONSUMER.DURABLE.CREATE.{calls}.>",
            f"$JS.API.CONSUMER.MSG.NEXT.{calls}.>",
            f"$JS.ACK.{calls}.>",
        ]
        sub = [
            f"{v}.calls.*",
            f"{v}.upstream.list_tools",
            f"{v}.durable.status.*",
            f"{v}.events.registry.>",
            f"{v}.events.connectors.>",
            f"{v}.events.proxy.>",
            *inbox,
        ]
    elif user == "audit":
        pub = [
            *js_stream,
            f"$JS.API.CONSUMER.*.{stream}",
            f"$JS.API.CONSUMER.*.{stream}.>",
            f"$JS.API.CONSUMER.MSG.NEXT.{stream}.>",
            f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.>",
            f"$JS.ACK.{stream}.>",
        ]
        sub = [*inbox]
    else:  # an internal service that may call the tools of one profile
        pub = [f"{v}.calls.{demo_profile}", f"{v}.durable.calls.{demo_profile}", f"{v}.durable.status.{demo_profile}"]
        sub = [f"{v}.durable.results.{demo_profile}.>", *inbox]
    return {"publish": {"allow": pub}, "subscribe": {"allow": sub}, "allow_responses": True}


def nats_config(
    *, port: int, store_dir: Path, root: str, stream: str, passwords: dict[str, str], demo_profile: str = "demo"
) -> str:
    users = [
        {"user": u, "password": passwords[u], "permissions": _perms(root, stream, u, demo_profile)}
        for u in SERVICE_USERS
    ]
    # NATS config accepts JSON syntax
    conf = {
        "listen": f"127.0.0.1:{port}",
        "jetstream": {"store_dir": str(store_dir)},
        "authorization": {"users": users},
        "max_payload": 8 * 1024 * 1024,
    }
    return json.dumps(conf, indent=2)
