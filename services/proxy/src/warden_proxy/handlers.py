"""NATS side of the proxy: tool calls from internal services, discovery for the registry,
and cache invalidation from registry and connector events."""

from __future__ import annotations

import json
import logging

from nats.aio.msg import Msg
from warden_common.bus import Bus
from warden_common.contracts import (
    UPSTREAM_LIST_TOOLS,
    VERSION,
    ToolCall,
    ToolCallResult,
    attested_calls_wildcard,
    call_origin,
    calls_wildcard,
)

from warden_proxy.agents import AgentKeys, service_principal
from warden_proxy.approvals import Approvals
from warden_proxy.service import CallPipeline

__all__ = ["register_handlers"]

# connector events after which pooled upstream sessions stay open (no URL or credential change
# for everyone; the credential cache is dropped all the same)
_KEEPS_SESSIONS = frozenset(
    {"connector.refreshed", "connector.connected", "connector.consent_failed", "connector.step_up_required"}
)

log = logging.getLogger(__name__)
_MAX_CALLS_IN_FLIGHT = 1024  # per replica; held approvals count too


async def register_handlers(
    bus: Bus, pipeline: CallPipeline, keys: AgentKeys, approvals: Approvals, *, act_for: frozenset[str] = frozenset()
) -> None:
    await bus.serve(UPSTREAM_LIST_TOOLS, pipeline.list_upstream, concurrency=16)

    async def on_call(req: ToolCall, msg: Msg) -> ToolCallResult:
        # the actor is the NATS user the subject names (the server checked it may publish
        # there), never what the message or a header claims
        profile, caller = call_origin(bus.root, msg.subject)
        principal = service_principal(profile, caller, req.user, act_for)
        return await pipeline.call(
            principal, req.tool, req.arguments, idempotency_key=req.idempotency_key, caller_wait_s=req.wait_s
        )

    # calls run concurrently: one slow upstream or held approval must not queue every other call
    for subject in (attested_calls_wildcard(bus.root), calls_wildcard(bus.root)):
        await bus.serve_on(
            subject,
            ToolCall,
            on_call,  # type: ignore[arg-type]
            with_msg=True,
            concurrency=_MAX_CALLS_IN_FLIGHT,
        )

    async def on_registry_event(_: Msg) -> None:
        pipeline.on_registry_event()

    async def on_connector_event(msg: Msg) -> None:
        try:
            doc = json.loads(msg.data)
        except ValueError:
            doc = {}
        refs = doc.get("refs") or {}
        data = doc.get("data") or {}
        changed = doc.get("type") not in _KEEPS_SESSIONS or bool(data.get("config_changed"))
        await pipeline.on_connector_event(
            refs.get("connector"),
            changed,
            type=doc.get("type", ""),
            user=refs.get("user"),
            reason=data.get("reason") if isinstance(data.get("reason"), str) else None,
        )

    async def on_proxy_event(msg: Msg) -> None:
        try:
            doc = json.loads(msg.data)
        except ValueError:
            return
        data = doc.get("data") or {}
        if doc.get("type") == "agent_key.revoked":
            keys.forget(data.get("prefix"))
        elif doc.get("type") in ("call.approved", "call.rejected"):
            approvals.wake(data.get("approval_id"))
            approvals.changed()
        elif doc.get("type") == "call.approval_requested":
            approvals.changed()  # held at some replica: the live queues show it

    events = f"{bus.root}.{VERSION}.events"
    await bus.listen(f"{events}.registry.>", on_registry_event)
    await bus.listen(f"{events}.connectors.>", on_connector_event)
    await bus.listen(f"{events}.proxy.agent_key.>", on_proxy_event)
    await bus.listen(f"{events}.proxy.call.approved", on_proxy_event)
    await bus.listen(f"{events}.proxy.call.rejected", on_proxy_event)
    await bus.listen(f"{events}.proxy.call.approval_requested", on_proxy_event)
