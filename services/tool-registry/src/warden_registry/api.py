"""HTTP API of the registry: tools, discovery, profiles, grants, visible/resolve/search."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Request, Response
from warden_common.contracts import ResolvedTool, SearchResult, VisibleTools

from warden_registry.models import (
    DiscoveredTool,
    GrantCreate,
    GrantOut,
    Operation,
    ProfileCreate,
    ProfileOut,
    RegisterBody,
    SearchBody,
    ToolOut,
    ToolPatch,
)
from warden_registry.service import Registry

__all__ = ["build_router"]


def _reg(request: Request) -> Registry:
    r: Registry = request.state.registry
    return r


def build_router(admin: object) -> APIRouter:
    router = APIRouter(prefix="/v1")
    Admin = Depends(admin)  # noqa: N806
    Reg = Depends(_reg)  # noqa: N806

    @router.post("/connectors/{connector}/discover", tags=["discovery"])
    async def discover(connector: str, alias: str | None = None, _: str = Admin, reg: Registry = Reg) -> dict[str, Any]:
        """List the connector's tools through the proxy, pre-classified read/write."""
        tools: list[DiscoveredTool] = await reg.discover(connector, alias)
        return {"tools": [t.model_dump() for t in tools]}

    @router.post("/connectors/{connector}/tools", status_code=201, tags=["discovery"])
    async def register(
        connector: str, body: RegisterBody = Body(default_factory=RegisterBody), actor: str = Admin, reg: Registry = Reg
    ) -> dict[str, Any]:
        return {"registered": await reg.register(connector, body, actor)}

    @router.post("/connectors/{connector}/refresh", tags=["discovery"])
    async def refresh(connector: str, actor: str = Admin, reg: Registry = Reg) -> dict[str, Any]:
        return await reg.refresh(connector, actor)

    @router.delete("/connectors/{connector}/tools/{name}", status_code=204, tags=["tools"])
    async def unregister(connector: str, name: str, actor: str = Admin, reg: Registry = Reg) -> Response:
        await reg.unregister(connector, name, actor)
        return Response(status_code=204)

    @router.get("/tools", response_model=list[ToolOut], tags=["tools"])
    async def list_tools(
        connector: str | None = None,
        q: str | None = None,
        operation: Operation | None = None,
        deferred: bool | None = None,
        favorite: bool | None = None,
        enabled: bool | None = None,
        held: bool | None = None,
        _: str = Admin,
        reg: Registry = Reg,
    ) -> list[ToolOut]:
        return await reg.list_tools(
            connector=connector,
            q=q,
            operation=operation,
            deferred=deferred,
            favorite=favorite,
            enabled=enabled,
            held=held,
        )

    @router.get("/tools/{name}", response_model=ToolOut, tags=["tools"])
    async def show(name: str, _: str = Admin, reg: Registry = Reg) -> ToolOut:
        return await reg.get_tool(name)

    @router.patch("/tools/{name}", response_model=ToolOut, tags=["tools"])
    async def update(name: str, body: ToolPatch, actor: str = Admin, reg: Registry = Reg) -> ToolOut:
        return await reg.update_tool(name, body, actor)

    @router.post("/tools/{name}/reapprove", response_model=ToolOut, tags=["tools"])
    async def reapprove(name: str, actor: str = Admin, reg: Registry = Reg) -> ToolOut:
        return await reg.reapprove(name, actor)

    @router.post("/profiles", status_code=201, response_model=ProfileOut, tags=["profiles"])
    async def create_profile(body: ProfileCreate, actor: str = Admin, reg: Registry = Reg) -> ProfileOut:
        return await reg.create_profile(body, actor)

    @router.get("/profiles", response_model=list[ProfileOut], tags=["profiles"])
    async def list_profiles(_: str = Admin, reg: Registry = Reg) -> list[ProfileOut]:
        return await reg.list_profiles()

    @router.get("/profiles/{name}", response_model=ProfileOut, tags=["profiles"])
    async def get_profile(name: str, _: str = Admin, reg: Registry = Reg) -> ProfileOut:
        return await reg.get_profile(name)

    @router.delete("/profiles/{name}", status_code=204, tags=["profiles"])
    async def delete_profile(name: str, actor: str = Admin, reg: Registry = Reg) -> Response:
        await reg.delete_profile(name, actor)
        return Response(status_code=204)

    @router.post("/profiles/{name}/grants", status_code=201, response_model=GrantOut, tags=["profiles"])
    async def grant(name: str, body: GrantCreate, actor: str = Admin, reg: Registry = Reg) -> GrantOut:
        return await reg.grant(name, body, actor)

    @router.delete("/profiles/{name}/grants/{grant_id}", status_code=204, tags=["profiles"])
    async def revoke(name: str, grant_id: str, actor: str = Admin, reg: Registry = Reg) -> Response:
        await reg.revoke(name, grant_id, actor)
        return Response(status_code=204)

    @router.get("/profiles/{name}/visible", response_model=VisibleTools, tags=["profiles"])
    async def visible(name: str, _: str = Admin, reg: Registry = Reg) -> VisibleTools:
        return await reg.visible(name)

    @router.get("/profiles/{name}/resolve/{tool}", response_model=ResolvedTool, tags=["profiles"])
    async def resolve(name: str, tool: str, _: str = Admin, reg: Registry = Reg) -> ResolvedTool:
        return await reg.resolve(name, tool)

    @router.post("/profiles/{name}/search", response_model=SearchResult, tags=["profiles"])
    async def search(name: str, body: SearchBody, _: str = Admin, reg: Registry = Reg) -> SearchResult:
        return await reg.search(name, body.query, body.k)

    return router
