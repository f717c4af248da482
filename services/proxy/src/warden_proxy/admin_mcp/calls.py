"""One tool call's context: who the admin is, the services' APIs, the proxy's own approvals
and agent keys, and the client's back-channel (form and URL elicitation) when it has one."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from mcp.server.context import ServerRequestContext

from warden_proxy.admin_mcp.apis import AdminApis, Service
from warden_proxy.admin_mcp.auth import AdminIdentity
from warden_proxy.agents import AgentKeys
from warden_proxy.approvals import Approvals

__all__ = ["AdminCall"]

log = logging.getLogger(__name__)

_CONFIRM_FORM: dict[str, Any] = {
    "type": "object",
    "properties": {"confirm": {"type": "boolean", "title": "Yes, do it", "default": False}},
    "required": ["confirm"],
}


@dataclass
class AdminCall:
    admin: AdminIdentity
    apis: AdminApis
    approvals: Approvals
    keys: AgentKeys
    ctx: ServerRequestContext[Any, Any]
    consent_wait_s: float

    @property
    def actor(self) -> str:
        return self.admin.actor

    async def api(self, service: Service, method: str, path: str, **kw: Any) -> Any:
        return await self.apis.call(service, method, path, self.actor, **kw)

    def _elicitation(self) -> Any:
        caps = self.ctx.session.client_capabilities
        return getattr(caps, "elicitation", None) if caps is not None else None

    def can_ask_form(self) -> bool:
        e = self._elicitation()
        # an empty elicitation capability means form mode (the 2025-06-18 meaning)
        return e is not None and not (getattr(e, "form", None) is None and getattr(e, "url", None) is not None)

    def can_open_url(self) -> bool:
        e = self._elicitation()
        return e is not None and getattr(e, "url", None) is not None

    async def confirm(self, message: str) -> bool | None:
        """The admin's answer to a yes/no form (True only for accept + confirm), or None when
        the client cannot show one."""
        if not self.can_ask_form():
            return None
        try:
            r = await self.ctx.session.elicit_form(message, requested_schema=_CONFIRM_FORM)
        except Exception:  # noqa: BLE001 - no back-channel after all (a stateless request)
            log.debug("form elicitation failed", exc_info=True)
            return None
        return r.action == "accept" and bool((r.content or {}).get("confirm"))

    async def open_url(self, message: str, url: str) -> bool | None:
        """Ask the admin to open `url` (URL elicitation): True when accepted, False when
        declined, None when the client cannot be asked."""
        if not self.can_open_url():
            return None
        try:
            r = await self.ctx.session.elicit_url(message, url, elicitation_id=uuid.uuid4().hex)
        except Exception:  # noqa: BLE001 - no back-channel after all
            log.debug("URL elicitation failed", exc_info=True)
            return None
        return r.action == "accept"
