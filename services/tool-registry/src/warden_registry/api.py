"""HTTP API of the registry (admin bearer token on every /v1 route): discovery and
registration, tools, connector settings, profiles and grants, and the proxy's three
questions (visible, resolve, search) for people and tests.

No `from __future__ import annotations` here: FastAPI reads the route signatures, whose
dependency aliases are local to `build_router`."""

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request, Response
from warden_common.contracts import ResolvedTool, SearchResult, VisibleTools
from warden_common.contracts.registry import PROFILE_PATTERN

from warden_registry.models import (
    ALIAS_PATTERN,
    CONNECTOR_PATTERN,
    ConnectorSettingsOut,
    ConnectorSettingsPatch,
    DiscoveredTool,
    GrantCreate,
    GrantOut,
    Operation,
    ProfileCreate,
    ProfileOut,
    ProfilePatch,
    RefreshOut,
    RegisterBody,
    RegisterOut,
    SearchBody,
    ToolOut,
    ToolPatch,
)
from warden_registry.service import Registry

__all__ = ["build_router"]

Connector = Annotated[str, Path(pattern=CONNECTOR_PATTERN, description="the connector's name")]
Profile = Annotated[str, Path(pattern=PROFILE_PATTERN)]
ToolName = Annotated[str, Path(min_length=1, max_length=128, description="a registered tool name")]
# jwt_passthrough connectors: a site token (JWE) the admin supplies so the upstream can be listed
SiteToken = Annotated[
    str | None,
    Header(
        alias="X-Warden-JWE",
        max_length=16384,
        description="for a jwt_passthrough connector: an embedding site's token (JWE) to list the upstream with",
    ),
]


def _registry(request: Request) -> Registry:
    reg: Registry = request.state.registry
    return reg


def build_router(admin: Callable[..., Awaitable[str]]) -> APIRouter:
    router = APIRouter(prefix="/v1")
    Actor = Annotated[str, Depends(admin)]  # noqa: N806 - a dependency alias
    Reg = Annotated[Registry, Depends(_registry)]  # noqa: N806

    # -- discovery and registration -----------------------------------------------------
    @router.post("/connectors/{connector}/discover", tags=["discovery"])
    async def discover(
        connector: Connector,
        actor: Actor,
        reg: Reg,
        alias: Annotated[str | None, Query(pattern=ALIAS_PATTERN)] = None,
        jwe: SiteToken = None,
    ) -> dict[str, list[DiscoveredTool]]:
        """List the connector's tools through the proxy, each with a pre-classified read/write fact."""
        return {"tools": await reg.discover(connector, actor, alias, jwe)}

    @router.post("/connectors/{connector}/tools", status_code=201, tags=["discovery"])
    async def register(
        connector: Connector,
        actor: Actor,
        reg: Reg,
        body: Annotated[RegisterBody, Body(default_factory=RegisterBody)],
        jwe: SiteToken = None,
    ) -> RegisterOut:
        """Register the selected tools (all when `tools` is omitted) as `<alias>__<tool>`."""
        return await reg.register(connector, body, actor, jwe)

    @router.post("/connectors/{connector}/refresh", tags=["discovery"])
    async def refresh(connector: Connector, actor: Actor, reg: Reg, jwe: SiteToken = None) -> RefreshOut:
        """List the connector again: flag (and hold) drifted tools, hide tools gone upstream."""
        return await reg.refresh(connector, actor, jwe=jwe)

    @router.delete("/connectors/{connector}/tools/{name}", status_code=204, tags=["discovery"])
    async def unregister(connector: Connector, name: ToolName, actor: Actor, reg: Reg) -> Response:
        await reg.unregister(connector, name, actor)
        return Response(status_code=204)

    @router.get("/connectors", tags=["discovery"])
    async def list_connector_settings(_: Actor, reg: Reg) -> list[ConnectorSettingsOut]:
        """The settings of every connector with registered tools: alias, defaults, whether its
        listing is cached, when it was last refreshed, and its tool count."""
        return await reg.all_connector_settings()

    @router.get("/connectors/{connector}", tags=["discovery"])
    async def connector_settings(connector: Connector, _: Actor, reg: Reg) -> ConnectorSettingsOut:
        return await reg.connector_settings(connector)

    @router.patch("/connectors/{connector}", tags=["discovery"])
    async def update_connector_settings(
        connector: Connector, body: ConnectorSettingsPatch, actor: Actor, reg: Reg
    ) -> ConnectorSettingsOut:
        """The connector-level auto-approve default, and whether its listings are cached."""
        return await reg.update_connector_settings(connector, body, actor)

    # -- tools -------------------------------------------------------------------------
    @router.get("/tools", tags=["tools"])
    async def list_tools(
        _: Actor,
        reg: Reg,
        connector: Annotated[str | None, Query(pattern=CONNECTOR_PATTERN)] = None,
        q: Annotated[str | None, Query(max_length=200)] = None,
        operation: Operation | None = None,
        deferred: bool | None = None,
        favorite: bool | None = None,
        enabled: bool | None = None,
        held: bool | None = None,
        missing: bool | None = None,
    ) -> list[ToolOut]:
        return await reg.list_tools(
            connector=connector,
            q=q,
            operation=operation,
            deferred=deferred,
            favorite=favorite,
            enabled=enabled,
            held=held,
            missing=missing,
        )

    @router.get("/tools/{name}", tags=["tools"])
    async def show_tool(name: ToolName, _: Actor, reg: Reg) -> ToolOut:
        return await reg.get_tool(name)

    @router.patch("/tools/{name}", tags=["tools"])
    async def update_tool(name: ToolName, body: ToolPatch, actor: Actor, reg: Reg) -> ToolOut:
        return await reg.update_tool(name, body, actor)

    @router.post("/tools/{name}/reapprove", tags=["tools"])
    async def reapprove(name: ToolName, actor: Actor, reg: Reg) -> ToolOut:
        """Accept the upstream's changed description and schema: pin them, release the hold."""
        return await reg.reapprove(name, actor)

    # -- profiles and grants -------------------------------------------------------------
    @router.post("/profiles", status_code=201, tags=["profiles"])
    async def create_profile(body: ProfileCreate, actor: Actor, reg: Reg) -> ProfileOut:
        return await reg.create_profile(body, actor)

    @router.get("/profiles", tags=["profiles"])
    async def list_profiles(_: Actor, reg: Reg) -> list[ProfileOut]:
        return await reg.list_profiles()

    @router.get("/profiles/{name}", tags=["profiles"])
    async def show_profile(name: Profile, _: Actor, reg: Reg) -> ProfileOut:
        return await reg.get_profile(name)

    @router.patch("/profiles/{name}", tags=["profiles"])
    async def update_profile(name: Profile, body: ProfilePatch, actor: Actor, reg: Reg) -> ProfileOut:
        """Change the description, or how the profile's agents see names (`tool_names`)."""
        return await reg.update_profile(name, body, actor)

    @router.delete("/profiles/{name}", status_code=204, tags=["profiles"])
    async def delete_profile(name: Profile, actor: Actor, reg: Reg) -> Response:
        await reg.delete_profile(name, actor)
        return Response(status_code=204)

    @router.post("/profiles/{name}/grants", status_code=201, tags=["profiles"])
    async def grant(name: Profile, body: GrantCreate, actor: Actor, reg: Reg) -> GrantOut:
        """Grant a tool or a pattern (`notion__*`), optionally read-only, with a reason."""
        return await reg.grant(name, body, actor)

    @router.delete("/profiles/{name}/grants/{grant_id}", status_code=204, tags=["profiles"])
    async def revoke(
        name: Profile,
        grant_id: str,
        actor: Actor,
        reg: Reg,
        reason: Annotated[str, Query(max_length=1000, description="why; goes into the grant.revoked event")] = "",
    ) -> Response:
        await reg.revoke(name, grant_id, actor, reason)
        return Response(status_code=204)

    @router.get("/profiles/{name}/visible", tags=["profiles"])
    async def visible(name: Profile, _: Actor, reg: Reg) -> VisibleTools:
        """What an agent with this profile lists (deferred tools behind `tool_search`)."""
        return await reg.visible(name)

    @router.get("/profiles/{name}/resolve/{tool}", tags=["profiles"])
    async def resolve(name: Profile, tool: ToolName, _: Actor, reg: Reg) -> ResolvedTool:
        return await reg.resolve(name, tool)

    @router.post("/profiles/{name}/search", tags=["profiles"])
    async def search(name: Profile, body: SearchBody, _: Actor, reg: Reg) -> SearchResult:
        return await reg.search(name, body.query, body.k)

    return router
