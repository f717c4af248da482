"""NATS side of the connectors service: answer credential requests, follow peers' changes."""

from __future__ import annotations

import json

from nats.aio.msg import Msg
from warden_common.bus import Bus
from warden_common.contracts import CREDENTIALS_GET, VERSION

from warden_connectors.service import ConnectorService

__all__ = ["register_handlers"]


async def register_handlers(bus: Bus, svc: ConnectorService) -> None:
    await bus.serve(CREDENTIALS_GET, svc.credential)

    async def on_connector_event(msg: Msg) -> None:
        try:
            refs = json.loads(msg.data).get("refs") or {}
        except ValueError:
            refs = {}
        svc.on_peer_event(refs.get("connector"))

    await bus.listen(f"{bus.root}.{VERSION}.events.connectors.>", on_connector_event)
