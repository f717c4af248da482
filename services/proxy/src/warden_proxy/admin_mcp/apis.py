"""The services' admin HTTP APIs, as the /mcp/admin tools call them: with the admin token,
and the admin's identity in `X-Warden-Actor` (what every admin route records as the actor),
so an action through a tool is audited exactly as the same action through the HTTP API."""

from __future__ import annotations

from typing import Any, Literal

import httpx
from pydantic import SecretStr

__all__ = ["AdminApis", "ToolFailed"]

Service = Literal["connectors", "registry", "audit"]
_SETTING = {
    "connectors": "WARDEN_PROXY_ADMIN_APIS__CONNECTORS_URL",
    "registry": "WARDEN_PROXY_ADMIN_APIS__REGISTRY_URL",
    "audit": "WARDEN_PROXY_ADMIN_APIS__AUDIT_URL",
}
_MAX_ANSWER = 8 * 1024 * 1024


class ToolFailed(Exception):
    """A tool could not do what it was asked; the message (the service's own, when it
    answered one) goes back as an `isError` result. It never carries a secret."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class AdminApis:
    def __init__(self, urls: dict[Service, str | None], token: SecretStr, *, timeout_s: float) -> None:
        self.urls = {k: v.rstrip("/") for k, v in urls.items() if v}
        self._token = token
        self._http = httpx.AsyncClient(timeout=timeout_s, trust_env=False, follow_redirects=False)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def call(
        self,
        service: Service,
        method: str,
        path: str,
        actor: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        """The service's JSON answer (None for 204); ToolFailed with its message otherwise."""
        base = self.urls.get(service)
        if base is None:
            raise ToolFailed(f"the {service} API is not configured on the proxy: set {_SETTING[service]}")
        headers = {"Authorization": f"Bearer {self._token.get_secret_value()}", "X-Warden-Actor": actor}
        query = {k: _param(v) for k, v in (params or {}).items() if v is not None}
        try:
            r = await self._http.request(method, base + path, headers=headers, json=json, params=query)
        except httpx.HTTPError as e:
            raise ToolFailed(f"the {service} service is unreachable ({type(e).__name__}); try again later") from None
        if len(r.content) > _MAX_ANSWER:
            raise ToolFailed(f"the {service} service answered more than {_MAX_ANSWER} bytes; narrow the filters")
        if r.status_code == 204 or not r.content:
            if r.is_success:
                return None
        try:
            body = r.json()
        except ValueError:
            body = None
        if not r.is_success:
            raise ToolFailed(f"{service}: {_message(body, r.status_code)}")
        return body


def _param(v: Any) -> Any:
    return str(v).lower() if isinstance(v, bool) else v


def _message(body: Any, status: int) -> str:
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict) and isinstance(err.get("message"), str):
        code = err.get("code")
        return f"{err['message']} ({code})" if code else str(err["message"])
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, str):
        return detail
    return f"HTTP {status}"
