"""NATS server configs: the embedded run's (JetStream on, loopback only) and the one the
Kubernetes manifests carry (`warden nats-config`). Both take their users and subject
permissions from `warden_common.natsauth`, the one definition: each user has its own reply
inbox, only the proxy may request credentials, only audit may consume the events stream, an
internal service may call only its profile."""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from pathlib import Path

from warden_common.natsauth import SERVICE_USERS as _SERVICES
from warden_common.natsauth import users

__all__ = ["DEMO_SERVICE", "SERVICE_USERS", "deploy_nats_config", "nats_config", "new_passwords"]

DEMO_SERVICE = "demo-service"  # the embedded run's internal service, calling the `demo` profile
SERVICE_USERS = (*_SERVICES, DEMO_SERVICE)
MAX_PAYLOAD = 8 * 1024 * 1024


def new_passwords() -> dict[str, str]:
    return {u: secrets.token_urlsafe(24) for u in SERVICE_USERS}


def nats_config(
    *, port: int, store_dir: Path, root: str, stream: str, passwords: dict[str, str], demo_profile: str = "demo"
) -> str:
    """The embedded run's server config (`stream` is implied by `root`; kept for callers)."""
    conf = {
        "listen": f"127.0.0.1:{port}",
        "jetstream": {"store_dir": str(store_dir)},
        "authorization": {"users": users(root, passwords, {DEMO_SERVICE: demo_profile})},
        "max_payload": MAX_PAYLOAD,
    }
    return json.dumps(conf, indent=2)  # NATS config accepts JSON syntax


def password_variable(user: str) -> str:
    """The environment variable the deployed nats-server reads a user's password from."""
    return "NATS_" + user.upper().replace("-", "_")


def deploy_nats_config(*, root: str = "warden", internal: Mapping[str, str] | None = None) -> str:
    """The server config of the manifests (deploy/base/nats.conf): passwords are `$NATS_<USER>`
    variables the server reads from its environment (a Secret), so the config holds no secret."""
    internal = dict(internal or {})
    names = [*_SERVICES, *internal]
    pw = {u: "$" + password_variable(u) for u in names}
    conf = {
        "listen": "0.0.0.0:4222",
        "http": "0.0.0.0:8222",
        "jetstream": {"store_dir": "/data"},
        "authorization": {"users": users(root, pw, internal)},
        "max_payload": MAX_PAYLOAD,
    }
    # JSON, except that a `$VAR` must stand unquoted for the server to read the environment
    text = json.dumps(conf, indent=2)
    for v in pw.values():
        text = text.replace(f'"{v}"', v)
    return text + "\n"
