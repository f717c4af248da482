"""What an upstream sends the calling agent during a call: log messages, sampling and
elicitation requests, relayed over the agent's own MCP session.

The endpoint wraps its tools/call handler so that every upstream request made for the call
carries an `AgentRelay` (lean's `RELAY` context variable). Each relayed request is checked
against what the agent declared: no `sampling` capability, no sampling (the upstream gets
an error, and the call goes on as its server decides). Log messages honour the level the
agent set with logging/setLevel on Warden; Warden never changes an upstream's level, since
one upstream session serves many agents.
"""

from __future__ import annotations

import logging
import warnings
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp.shared.message import ServerMessageMetadata
from pydantic import ValidationError

from warden_proxy.lean import RELAY, RpcError

__all__ = ["AgentRelay", "LogLevels", "relayed"]

log = logging.getLogger(__name__)

LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
_MAX_SESSIONS = 10_000
_INVALID_PARAMS = -32602
_METHOD_NOT_FOUND = -32601
_INTERNAL = -32603


class LogLevels:
    """The minimum log level each agent session asked for (none asked: everything)."""

    def __init__(self) -> None:
        self._levels: OrderedDict[str, str] = OrderedDict()

    def set(self, key: str, level: str) -> None:
        self._levels[key] = level
        self._levels.move_to_end(key)
        while len(self._levels) > _MAX_SESSIONS:
            self._levels.popitem(last=False)

    def allows(self, key: str, level: str) -> bool:
        floor = self._levels.get(key)
        if floor is None or level not in LEVELS:
            return True
        return LEVELS.index(level) >= LEVELS.index(floor)


class AgentRelay:
    """lean's `Relay` for one agent request."""

    def __init__(self, ctx: ServerRequestContext[Any, Any], levels: LogLevels, key: str) -> None:
        self.ctx = ctx
        self.levels = levels
        self.key = key

    async def log(self, params: dict[str, Any]) -> None:
        try:
            p = types.LoggingMessageNotificationParams.model_validate(params)
        except ValidationError:
            return
        if not self.levels.allows(self.key, p.level):
            return
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MCPDeprecationWarning)  # deprecated from 2026-07-28 on only
                await self.ctx.session.send_log_message(
                    p.level, p.data, p.logger, related_request_id=self.ctx.request_id
                )
        except Exception:  # noqa: BLE001 - the agent went away: the call goes on
            log.debug("could not relay a log message", exc_info=True)

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        caps = self.ctx.session.client_capabilities
        request: Any
        result_type: Any
        try:
            if method == "sampling/createMessage":
                if caps is None or caps.sampling is None:
                    raise RpcError(_METHOD_NOT_FOUND, "the calling client does not support sampling")
                sp = types.CreateMessageRequestParams.model_validate(params)
                request = types.CreateMessageRequest(params=sp)
                result_type = types.CreateMessageResultWithTools if sp.tools else types.CreateMessageResult
            elif method == "elicitation/create":
                elicit = caps.elicitation if caps is not None else None
                url_mode = params.get("mode") == "url"
                if elicit is None or (url_mode and getattr(elicit, "url", None) is None):
                    raise RpcError(_METHOD_NOT_FOUND, "the calling client does not support this elicitation")
                ep: Any = (
                    types.ElicitRequestURLParams.model_validate(params)
                    if url_mode
                    else types.ElicitRequestFormParams.model_validate(params)
                )
                request = types.ElicitRequest(params=ep)
                result_type = types.ElicitResult
            else:
                raise RpcError(_METHOD_NOT_FOUND, f"{method} is not relayed by Warden")
        except ValidationError as e:
            raise RpcError(_INVALID_PARAMS, f"malformed {method} request: {e.error_count()} problem(s)") from None
        try:
            result = await self.ctx.session.send_request(
                request, result_type, metadata=ServerMessageMetadata(related_request_id=self.ctx.request_id)
            )
        except MCPError as e:
            raise RpcError(e.code, e.message) from None
        except Exception as e:  # noqa: BLE001 - no back-channel, or the agent went away
            log.debug("could not relay %s", method, exc_info=True)
            raise RpcError(_INTERNAL, f"the calling client could not be asked ({type(e).__name__})") from None
        return dict(result.model_dump(mode="json", by_alias=True, exclude_none=True))


Handler = Callable[[ServerRequestContext[Any, Any], Any], Awaitable[Any]]


def relayed(handler: Handler, levels: LogLevels, key_of: Callable[[ServerRequestContext[Any, Any]], str]) -> Handler:
    """Wrap a request handler so upstream requests made while it runs reach this agent."""

    async def wrapped(ctx: ServerRequestContext[Any, Any], params: Any) -> Any:
        token = RELAY.set(AgentRelay(ctx, levels, key_of(ctx)))
        try:
            return await handler(ctx, params)
        finally:
            RELAY.reset(token)

    return wrapped
