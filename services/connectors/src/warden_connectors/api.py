"""Admin HTTP API of the connectors service."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Request, Response

from warden_connectors.models import ConnectorCreate, ConnectorUpdate, ConnectorView
from warden_connectors.service import ConnectorService

__all__ = ["build_router"]


def _svc(request: Request) -> ConnectorService:
    svc: ConnectorService = request.state.connectors
    return svc


def build_router(admin: object) -> APIRouter:
    router = APIRouter(prefix="/v1/connectors", tags=["connectors"])
    Admin = Depends(admin)  # noqa: N806

    @router.post("", status_code=201, response_model=ConnectorView)
    async def create(body: ConnectorCreate, actor: str = Admin, svc: ConnectorService = Depends(_svc)) -> ConnectorView:
        return await svc.create(body, actor)

    @router.get("", response_model=list[ConnectorView])
    async def list_connectors(
        status: Literal["active", "needs_attention", "inactive", "all"] = "all",
        _: str = Admin,
        svc: ConnectorService = Depends(_svc),
    ) -> list[ConnectorView]:
        return await svc.list(status)

    @router.get("/{name}", response_model=ConnectorView)
    async def show(name: str, _: str = Admin, svc: ConnectorService = Depends(_svc)) -> ConnectorView:
        return await svc.get(name)

    @router.patch("/{name}", response_model=ConnectorView)
    async def update(
        name: str, body: ConnectorUpdate, actor: str = Admin, svc: ConnectorService = Depends(_svc)
    ) -> ConnectorView:
        return await svc.update(name, body, actor)

    @router.post("/{name}/disconnect", response_model=ConnectorView)
    async def disconnect(name: str, actor: str = Admin, svc: ConnectorService = Depends(_svc)) -> ConnectorView:
        return await svc.disconnect(name, actor)

    @router.delete("/{name}", status_code=204)
    async def remove(name: str, actor: str = Admin, svc: ConnectorService = Depends(_svc)) -> Response:
        await svc.remove(name, actor)
        return Response(status_code=204)

    return router
