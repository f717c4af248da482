"""An end user's own per-user connections, over HTTP: `/v1/me/connections`.

The caller authenticates with an agent key bound to a user (the same key its agent uses);
the user is the key's, never a value from the request. The proxy forwards to connectors over
NATS (`connections.*`, which only the proxy may publish). A user sees and changes only their
own connections; the consent URL comes back for them to open.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Request
from warden_common.bus import Bus
from warden_common.contracts.credentials import (
    CONNECTIONS_CONSENT,
    CONNECTIONS_DISCONNECT,
    CONNECTIONS_GET,
    CONNECTIONS_LIST,
    NAME_PATTERN,
    ConnectionRequest,
)
from warden_common.errors import Forbidden

from warden_proxy.agents import request_principal

__all__ = ["build_me_router"]

Connector = Path(pattern=NAME_PATTERN, description="the connector's name")


async def _user(request: Request) -> str:
    principal = await request_principal(request)
    if not principal.user:
        raise Forbidden("this agent key acts for no user: per-user connections need a key bound to a user")
    return principal.user


def _bus(request: Request) -> Bus:
    bus: Bus = request.state.pipeline.bus
    return bus


def build_me_router() -> APIRouter:
    router = APIRouter(prefix="/v1/me/connections", tags=["my connections"])
    User = Depends(_user)  # noqa: N806
    Nats = Depends(_bus)  # noqa: N806

    @router.get("")
    async def mine(user: str = User, bus: Bus = Nats) -> dict[str, Any]:
        """My connection to every per-user connector."""
        out = await bus.request(CONNECTIONS_LIST, ConnectionRequest(user=user))
        return out.model_dump(mode="json")

    @router.get("/{connector}")
    async def one(connector: str = Connector, user: str = User, bus: Bus = Nats) -> dict[str, Any]:
        """`connection_required`, `verifying` (a consent URL is out), `connected`,
        `reauth_required` or `expired`: poll this after opening the consent URL."""
        out = await bus.request(CONNECTIONS_GET, ConnectionRequest(connector=connector, user=user))
        return out.model_dump(mode="json", exclude_none=True)

    @router.post("/{connector}/consent")
    async def consent(connector: str = Connector, user: str = User, bus: Bus = Nats) -> dict[str, Any]:
        """Start (or restart) my consent: open `consent_url` in a browser."""
        out = await bus.request(CONNECTIONS_CONSENT, ConnectionRequest(connector=connector, user=user))
        return out.model_dump(mode="json", exclude_none=True)

    @router.delete("/{connector}")
    async def disconnect(connector: str = Connector, user: str = User, bus: Bus = Nats) -> dict[str, Any]:
        """Disconnect: my tokens are purged and revoked at the provider."""
        out = await bus.request(CONNECTIONS_DISCONNECT, ConnectionRequest(connector=connector, user=user))
        return out.model_dump(mode="json", exclude_none=True)

    return router
