"""HTTP API of the proxy: agent keys (admin), approvals and their live queue (admin), tool
calls (agents), RFC 9728 metadata."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, TypeVar

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from warden_common.contracts.registry import PROFILE_PATTERN
from warden_common.tracing import begin_call

from warden_proxy.agents import AgentKeyCreate, AgentKeys, AgentKeyView, Principal, request_principal
from warden_proxy.approvals import ApprovalDecision, Approvals, ApprovalView
from warden_proxy.rfc9728 import WELL_KNOWN, metadata_path, protected_resource_metadata
from warden_proxy.service import CallPipeline

__all__ = ["build_router"]

T = TypeVar("T")
# the live approval queue says something at least this often (a comment), so proxies and
# browsers keep the connection and a closed one is noticed
KEEPALIVE_S = 15.0


class AdminCall(BaseModel):
    """`POST /v1/admin/tools/{name}/call`: whom the admin runs the tool as, and with what."""

    model_config = ConfigDict(extra="forbid")

    profile: str = Field(pattern=PROFILE_PATTERN, description="the behavior profile whose grants apply")
    user: str | None = Field(
        default=None, min_length=1, max_length=200, description="the end user acted for (per-user connectors)"
    )
    arguments: dict[str, Any] = Field(default_factory=dict)


def _keys(request: Request) -> AgentKeys:
    keys: AgentKeys = request.state.keys
    return keys


def _pipeline(request: Request) -> CallPipeline:
    p: CallPipeline = request.state.pipeline
    return p


def _approvals(request: Request) -> Approvals:
    a: Approvals = request.state.approvals
    return a


async def _unless_disconnected(request: Request, work: Coroutine[Any, Any, T]) -> T:
    """Run `work`, cancelled when the client disconnects (the body is read: the next message
    the server gets is `http.disconnect`)."""
    task = asyncio.ensure_future(work)

    async def watch() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass
        task.cancel()

    watcher = asyncio.ensure_future(watch())
    try:
        return await task
    finally:
        watcher.cancel()


def build_router(admin: Callable[..., Any], resource_url: str, *, jwt_issuer: str | None = None) -> APIRouter:
    router = APIRouter()
    Admin = Depends(admin)  # noqa: N806
    meta = protected_resource_metadata(resource_url, jwt_issuer)

    async def prm() -> dict[str, Any]:
        return meta

    # RFC 9728 §3.1: the well-known path followed by the resource's path (one place builds it);
    # the bare well-known path too, for clients that look there first
    for path in dict.fromkeys((metadata_path(resource_url), WELL_KNOWN)):
        router.add_api_route(path, prm, methods=["GET"], tags=["mcp"])

    @router.post("/v1/agent-keys", status_code=201, tags=["agent keys"])
    async def create_key(body: AgentKeyCreate, actor: str = Admin, keys: AgentKeys = Depends(_keys)) -> dict[str, Any]:
        """Create an agent API key bound to a profile. The key is in this answer only."""
        return await keys.create(body, actor)

    @router.get("/v1/agent-keys", response_model=list[AgentKeyView], tags=["agent keys"])
    async def list_keys(_: str = Admin, keys: AgentKeys = Depends(_keys)) -> list[AgentKeyView]:
        return await keys.list()

    @router.delete("/v1/agent-keys/{prefix}", response_model=AgentKeyView, tags=["agent keys"])
    async def revoke_key(prefix: str, actor: str = Admin, keys: AgentKeys = Depends(_keys)) -> AgentKeyView:
        return await keys.revoke(prefix, actor)

    @router.get("/v1/approvals", response_model=list[ApprovalView], tags=["approvals"])
    async def list_approvals(
        status: str | None = "pending", _: str = Admin, approvals: Approvals = Depends(_approvals)
    ) -> list[ApprovalView]:
        return await approvals.list(status)

    @router.get("/v1/approvals/stream", response_class=StreamingResponse, tags=["approvals"])
    async def approvals_stream(
        request: Request, _: str = Admin, approvals: Approvals = Depends(_approvals)
    ) -> StreamingResponse:
        """Server-Sent Events: `event: approvals` with every pending approval (as `GET
        /v1/approvals`), at once and again whenever the queue changes: a call held or decided at
        any replica, abandoned or revoked, or an approval reaching its expiry."""
        approvals.check_room()  # refused (503) before any byte when too many are open

        async def gen() -> AsyncIterator[bytes]:
            with approvals.watch() as woken:
                last = None
                yield b": connected\n\n"
                while True:
                    woken.clear()  # before reading: a change from now on wakes the next round
                    items = await approvals.pending()
                    doc = json.dumps([i.model_dump(mode="json") for i in items], separators=(",", ":"))
                    if doc != last:
                        last = doc
                        yield f"event: approvals\ndata: {doc}\n\n".encode()
                    wait = KEEPALIVE_S
                    if items:  # the first to expire leaves the queue then, event or not
                        soonest = min(i.expires_at for i in items) - datetime.now(UTC)
                        wait = min(wait, max(soonest.total_seconds(), 0.0) + 0.05)
                    try:
                        await asyncio.wait_for(woken.wait(), timeout=wait)
                    except TimeoutError:
                        if await request.is_disconnected():
                            return
                        yield b": keep-alive\n\n"

        return StreamingResponse(
            gen(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )

    @router.post("/v1/approvals/{approval_id}/approve", response_model=ApprovalView, tags=["approvals"])
    async def approve(
        approval_id: str,
        body: ApprovalDecision = Body(default_factory=ApprovalDecision),
        actor: str = Admin,
        approvals: Approvals = Depends(_approvals),
    ) -> ApprovalView:
        return await approvals.decide(approval_id, True, body, actor)

    @router.post("/v1/approvals/{approval_id}/reject", response_model=ApprovalView, tags=["approvals"])
    async def reject(
        approval_id: str,
        body: ApprovalDecision = Body(default_factory=ApprovalDecision),
        actor: str = Admin,
        approvals: Approvals = Depends(_approvals),
    ) -> ApprovalView:
        return await approvals.decide(approval_id, False, body, actor)

    @router.post("/v1/tools/{name}/call", tags=["calls"])
    async def call_tool(
        name: str,
        request: Request,
        arguments: dict[str, Any] = Body(default_factory=dict, embed=True),
        principal: Principal = Depends(request_principal),
        pipeline: CallPipeline = Depends(_pipeline),
    ) -> dict[str, Any]:
        """Call a tool as the agent whose key is in Authorization; same pipeline as MCP. A
        client that disconnects while the call waits (for an approval) cancels it."""
        begin_call()
        r = await _unless_disconnected(request, pipeline.call(principal, name, arguments))
        return r.model_dump(mode="json")

    @router.post("/v1/admin/tools/{name}/call", tags=["calls"])
    async def admin_call_tool(
        name: str,
        request: Request,
        body: AdminCall,
        actor: str = Admin,
        pipeline: CallPipeline = Depends(_pipeline),
    ) -> dict[str, Any]:
        """Run a tool as a profile (and, for per-user connectors, as a user), with the admin
        token: the console's try-it and scripts. The same pipeline as an agent's call: only
        what the profile is granted, approvals apply (a held call waits for a decision), and
        every event records the admin as the actor, the profile and user in its refs."""
        begin_call()
        principal = Principal(kind="admin", id=actor, profile=body.profile, user=body.user)
        r = await _unless_disconnected(request, pipeline.call(principal, name, body.arguments))
        return r.model_dump(mode="json")

    return router
