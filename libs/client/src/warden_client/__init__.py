"""Warden's client for internal services: call the tools a profile grants over NATS.

    pip install ./libs/client        # from a Warden checkout; brings warden-common's contracts

    from warden_client import WardenClient

    async with WardenClient(nats_url="nats://…", profile="billing", user="billing-svc", password="…") as warden:
        result = await warden.call("notion__search", {"query": "roadmap"})

It needs nats-py and pydantic only (through `warden-common`'s contracts and errors), never
the services' server dependencies (FastAPI, uvicorn, asyncpg, Prometheus, httpx): those are
`warden-common[server]`.
"""

from warden_client._client import WardenClient

__all__ = ["WardenClient"]
__version__ = "0.1.0"
