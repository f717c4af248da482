"""Admin HTTP API of the connectors service (admin token on every route)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from fastapi import APIRouter, Depends, Path, Request

from warden_connectors.consent import ConsentStart
from warden_connectors.models import ConnectorCreate, ConnectorUpdate, ConnectorView
from warden_connectors.service import ConnectorService

__all__ = ["build_admin_router", "svc"]

User = Path(min_length=1, max_length=200, description="the user id the proxy passes for this person")


def svc(request: Request) -> ConnectorService:
    s: ConnectorService = request.state.connectors
    return s


def _consent(started: ConsentStart | None) -> dict[str, Any]:
    if started is None:  # client credentials: the token was obtained, nobody has to consent
        return {"consent_url": None, "connected": True}
    return {"consent_url": started.url, "expires_at": started.expires_at.isoformat()}


def build_admin_router(admin: Callable[..., Any]) -> APIRouter:
    router = APIRouter(prefix="/v1/connectors", tags=["connectors"])
    Admin = Depends(admin)  # noqa: N806
    Svc = Depends(svc)  # noqa: N806

    @router.post("", status_code=201)
    async def create(
        body: ConnectorCreate, authorize: bool = False, actor: str = Admin, s: ConnectorService = Svc
    ) -> dict[str, Any]:
        """Add a connector; with `?authorize=true` (oauth2) also start the admin's consent and
        answer its `consent_url`. If that start is refused (discovery, registration), nothing
        is left behind: the retry starts clean."""
        if not authorize:
            return (await s.create(body, actor)).model_dump(mode="json")
        view, started = await s.add(body, actor)
        return {**view.model_dump(mode="json"), **_consent(started)}

    @router.get("", response_model=list[ConnectorView])
    async def list_connectors(
        status: Literal["active", "needs_attention", "inactive", "all"] = "all",
        _: str = Admin,
        s: ConnectorService = Svc,
    ) -> list[ConnectorView]:
        return await s.list(status)

    @router.get("/{name}", response_model=ConnectorView)
    async def show(name: str, _: str = Admin, s: ConnectorService = Svc) -> ConnectorView:
        return await s.get(name)

    @router.get("/{name}/json")
    async def as_json(name: str, _: str = Admin, s: ConnectorService = Svc) -> dict[str, Any]:
        """The connector as a create body, to copy; secrets are left out and listed."""
        return await s.as_json(name)

    @router.patch("/{name}", response_model=ConnectorView)
    async def update(name: str, body: ConnectorUpdate, actor: str = Admin, s: ConnectorService = Svc) -> ConnectorView:
        return await s.update(name, body, actor)

    @router.post("/{name}/authorize")
    async def authorize(name: str, actor: str = Admin, s: ConnectorService = Svc) -> dict[str, Any]:
        """An organization-wide consent URL (single use, valid until `expires_at`:
        `WARDEN_CONNECTORS_STATE_TTL_S`, 10 minutes by default)."""
        return _consent(await s.authorize(name, actor))

    @router.post("/{name}/reconnect")
    async def reconnect(name: str, actor: str = Admin, s: ConnectorService = Svc) -> dict[str, Any]:
        """A fresh consent for the same connector (discovery runs again)."""
        return _consent(await s.reconnect(name, actor))

    @router.post("/{name}/test")
    async def test(name: str, _: str = Admin, s: ConnectorService = Svc) -> dict[str, Any]:
        """List the connector's tools through the proxy with its current credential."""
        return await s.test(name)

    @router.post("/{name}/disconnect", response_model=ConnectorView)
    async def disconnect(name: str, actor: str = Admin, s: ConnectorService = Svc) -> ConnectorView:
        return await s.disconnect(name, actor)

    @router.delete("/{name}")
    async def remove(name: str, actor: str = Admin, s: ConnectorService = Svc) -> dict[str, Any]:
        """Revoke (oauth2), then delete: `{"removed": name, "revocation": …}` (oauth2 only)."""
        report = await s.remove(name, actor)
        return {"removed": name, **({"revocation": report} if report is not None else {})}

    # -- per-user connections of any user (admins); users manage their own through the proxy's
    # /v1/me/connections, authenticated by their agent key -------------------------------------
    @router.post("/{name}/connections/{user}/consent")
    async def user_consent(name: str, user: str = User, _: str = Admin, s: ConnectorService = Svc) -> dict[str, Any]:
        return _consent(await s.user_consent(name, user))

    @router.get("/{name}/connections")
    async def connections(name: str, _: str = Admin, s: ConnectorService = Svc) -> dict[str, Any]:
        """Every user's connection to a per-user connector: status, scopes, the upstream account
        it links; never a token."""
        return {"connector": name, "connections": await s.connections_of(name)}

    @router.get("/{name}/connections/{user}")
    async def user_connection(name: str, user: str = User, _: str = Admin, s: ConnectorService = Svc) -> dict[str, Any]:
        """`connection_required`, `verifying` (a consent URL is out), `connected`, or
        `reauth_required` / `expired`."""
        return await s.user_connection(name, user)

    @router.delete("/{name}/connections/{user}")
    async def user_disconnect(
        name: str, user: str = User, actor: str = Admin, s: ConnectorService = Svc
    ) -> dict[str, Any]:
        return await s.user_disconnect(name, user, actor)

    return router
