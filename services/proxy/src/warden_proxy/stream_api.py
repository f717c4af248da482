"""`POST /v1/tools/{name}/call/stream`: the HTTP tool call for consoles and scripts, as
Server-Sent Events, so a long call shows what it is doing.

Events, in order: `started` (the call id is not known before the pipeline assigns it, so this
carries the tool), any number of `progress` ({progress, total, message}) and `consent`
({url, connector}: a per-user connection is needed; the call waits for it, then goes on), then
exactly one `result` (the tool result) or `error` ({code, message}). A comment line every 15 s
keeps idle proxies from closing the stream. If the client goes away, the call is cancelled.
Same authentication, pipeline, checks and audit as the MCP endpoint and the plain HTTP call.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import StreamingResponse
from warden_common.errors import WardenError
from warden_common.tracing import begin_call

from warden_proxy.agents import Principal, request_principal
from warden_proxy.service import CallPipeline

__all__ = ["build_stream_router"]

_KEEPALIVE_S = 15.0


def _sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def build_stream_router() -> APIRouter:
    router = APIRouter(tags=["calls"])

    @router.post("/v1/tools/{name}/call/stream", response_class=StreamingResponse)
    async def call_stream(
        name: str,
        request: Request,
        arguments: dict[str, Any] = Body(default_factory=dict, embed=True),
        principal: Principal = Depends(request_principal),
    ) -> StreamingResponse:
        """Call a tool as the agent whose key is in Authorization; answers text/event-stream."""
        pipeline: CallPipeline = request.state.pipeline
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()

        async def progress(value: float, total: float | None, message: str | None) -> None:
            await queue.put(_sse("progress", {"progress": value, "total": total, "message": message}))

        async def consent(url: str, connector: str) -> bool:
            await queue.put(_sse("consent", {"url": url, "connector": connector}))
            return True  # wait for the user's connection, then finish the call

        async def run() -> None:
            begin_call()
            try:
                r = await pipeline.call(principal, name, arguments, progress=progress, on_consent=consent)
                await queue.put(_sse("result", r.model_dump(mode="json")))
            except WardenError as e:
                await queue.put(_sse("error", {"code": str(e.code), "message": e.message}))
            finally:
                await queue.put(None)

        async def events() -> AsyncIterator[bytes]:
            task = asyncio.create_task(run())
            try:
                yield _sse("started", {"tool": name})
                while True:
                    try:
                        item = await asyncio.wait_for(queue.get(), timeout=_KEEPALIVE_S)
                    except TimeoutError:
                        yield b": keep-alive\n\n"
                        continue
                    if item is None:
                        return
                    yield item
            finally:
                if not task.done():  # the client went away: stop the call
                    task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    return router
