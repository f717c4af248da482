"""NATS side of the connectors service: answer credential requests (the proxy's), end users'
own connections (through the proxy, which authenticated the user), follow peers' changes."""

from __future__ import annotations

import json
from typing import Any

from nats.aio.msg import Msg
from warden_common.bus import Bus
from warden_common.contracts import CREDENTIALS_GET, VERSION, Actor, Credential, CredentialRequest
from warden_common.contracts.credentials import (
    CONNECTIONS_CONSENT,
    CONNECTIONS_DISCONNECT,
    CONNECTIONS_GET,
    CONNECTIONS_LIST,
    ConnectionList,
    ConnectionRequest,
    ConnectionStatus,
)
from warden_common.errors import WardenError
from warden_common.metrics import CREDENTIAL_ISSUES, connector_label

from warden_connectors.errors import BadInput
from warden_connectors.service import ConnectorService

__all__ = ["register_handlers"]


def _status(d: dict[str, Any]) -> ConnectionStatus:
    return ConnectionStatus(
        connector=d["connector"],
        user=d["user"],
        status=d["status"],
        scopes=list(d.get("scopes") or []),
        connected_at=d.get("connected_at"),
        expires_at=d.get("expires_at"),
        reason=d.get("reason"),
        account=d.get("account"),
    )


def _named(req: ConnectionRequest) -> str:
    if req.connector is None:
        raise BadInput("name the connector")
    return req.connector


class UserConnections:
    """An end user's own connections; the user in each request is the authenticated one."""

    def __init__(self, svc: ConnectorService) -> None:
        self.svc = svc

    async def list(self, req: ConnectionRequest) -> ConnectionList:
        return ConnectionList(connections=[_status(d) for d in await self.svc.user_connections(req.user)])

    async def get(self, req: ConnectionRequest) -> ConnectionStatus:
        return _status(await self.svc.user_connection(_named(req), req.user))

    async def consent(self, req: ConnectionRequest) -> ConnectionStatus:
        name = _named(req)
        started = await self.svc.user_consent(name, req.user)
        st = _status(await self.svc.user_connection(name, req.user))
        return st.model_copy(update={"consent_url": started.url, "consent_expires_at": started.expires_at})

    async def disconnect(self, req: ConnectionRequest) -> ConnectionStatus:
        actor = Actor(kind="user", id=req.user)
        return _status(await self.svc.user_disconnect(_named(req), req.user, actor))


async def register_handlers(bus: Bus, svc: ConnectorService) -> None:
    async def credential(req: CredentialRequest) -> Credential:
        try:
            cred = await svc.credential(req)
        except WardenError as e:  # a typed refusal: counted by its code, answered as it is
            CREDENTIAL_ISSUES.labels(connector_label(req.connector), str(e.code)).inc()
            raise
        CREDENTIAL_ISSUES.labels(connector_label(req.connector), "ok").inc()
        return cred

    await bus.serve(CREDENTIALS_GET, credential)
    own = UserConnections(svc)
    await bus.serve(CONNECTIONS_LIST, own.list)
    await bus.serve(CONNECTIONS_GET, own.get)
    await bus.serve(CONNECTIONS_CONSENT, own.consent)
    await bus.serve(CONNECTIONS_DISCONNECT, own.disconnect)

    async def on_connector_event(msg: Msg) -> None:
        try:
            refs = json.loads(msg.data).get("refs") or {}
        except ValueError:
            refs = {}
        svc.on_peer_event(refs.get("connector"))

    await bus.listen(f"{bus.root}.{VERSION}.events.connectors.>", on_connector_event)
