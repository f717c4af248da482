"""The console's routes: pages (role-checked on the server), sign-in and sign-out, and the
forwarding API the pages call.

| route | who | what |
|---|---|---|
| `GET /login`, `POST /api/login` | anyone | sign in with the admin token or an agent key |
| `GET /login/oidc[?login_hint=]`, `GET /login/oidc/callback` | anyone | single sign-on (`sso.py`) |
| `POST /api/logout` | a session | end it (and revoke the keys "Try it" made) |
| `GET /api/session` | a session | role, label and the CSRF token for this page |
| `GET /api/health` | a session | each service's readiness, for the banner |
| `/{connectors,tools,try,profiles,approvals,audit}` | admin | pages; an end user gets a 403 page |
| `/me` | a session | My connections |
| `ANY /api/s/{service}/v1/...` | admin | forwarded to that service with the admin's token |
| `POST /api/try/{tool}` | admin | the proxy's SSE call, as a profile (and user) |
| `ANY /api/me/connections[/...]` | end user | the proxy's `/v1/me/connections` with the user's key |

Every state-changing request needs the session's `X-CSRF-Token` and must not come from
another site (`Origin`, `Sec-Fetch-Site`). An admin signed in through the issuer is forwarded
with the console's root admin token and `X-Warden-Actor: <their name>` (as the proxy's
/mcp/admin does), so the services record them by name; an end user, with their access token.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from pydantic import BaseModel, Field, SecretStr
from warden_common.errors import BadInput, Forbidden, Unauthorized, WardenError

from warden_console.oidc import Oidc
from warden_console.pages import ADMIN_PAGES, forbidden_page, login_page, shell
from warden_console.sessions import Session, SessionStore, TryKey
from warden_console.upstream import SERVICE_NAMES, Upstreams

__all__ = ["COOKIE", "ConsoleState", "build_router", "set_session_cookie", "state_of"]

log = logging.getLogger(__name__)
COOKIE = "warden_session"
_STREAMED = ("text/event-stream", "application/x-ndjson", "text/csv")
_SAFE_PATH = re.compile(r"^v1/[A-Za-z0-9._~\-/%*:]*$")
_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")


class ConsoleState:
    def __init__(
        self,
        sessions: SessionStore,
        upstreams: Upstreams,
        cookie_secure: bool,
        mcp_url: str,
        *,
        oidc: Oidc | None = None,
        admin_token: SecretStr | None = None,
    ) -> None:
        self.mcp_url = mcp_url
        self.sessions = sessions
        self.upstreams = upstreams
        self.cookie_secure = cookie_secure
        self.oidc = oidc
        self.admin_token = admin_token  # the root admin token, for admins signed in through the issuer

    async def revoke_try_keys(self, sessions: list[Session]) -> None:
        """Best effort: the keys "Try it" made for these sessions (they expire with nothing else)."""
        for s in sessions:
            for k in list(s.try_keys.values()):
                try:
                    await self.upstreams.request(
                        "proxy", "DELETE", f"/v1/agent-keys/{k.prefix}", s.secret.get_secret_value(), actor=s.actor
                    )
                except WardenError as e:
                    log.warning("console: could not revoke try-it key %s: %s", k.prefix, e.message)
            s.try_keys.clear()


class Login(BaseModel):
    kind: Literal["admin", "agent_key"]
    secret: SecretStr = Field(min_length=8, max_length=4096)


def state_of(request: Request) -> ConsoleState:
    st: ConsoleState = request.state.console
    return st


def _session(request: Request) -> Session | None:
    return state_of(request).sessions.get(request.cookies.get(COOKIE))


def _need(request: Request, role: str | None = None) -> Session:
    s = _session(request)
    if s is None:
        raise Unauthorized("not signed in (or the session ended): sign in again")
    if role is not None and s.role != role:
        raise Forbidden(
            "this needs an administrator's session" if role == "admin" else "this needs an end user's session"
        )
    return s


def _same_site(request: Request) -> None:
    """Refuse a request another site made the browser send (defence beside SameSite=Strict)."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        raise Forbidden("cross-site request refused")
    origin = request.headers.get("origin")
    if origin is not None:
        host = request.headers.get("host", "")
        if origin.split("://", 1)[-1] != host:
            raise Forbidden("cross-site request refused (Origin does not match)")


def _changing(request: Request, role: str | None = None) -> Session:
    """A state-changing request: same site, a session, its CSRF token."""
    _same_site(request)
    s = _need(request, role)
    if not SessionStore.csrf_ok(s, request.headers.get("x-csrf-token")):
        raise Forbidden("missing or wrong CSRF token: reload the page and try again")
    return s


async def _body(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        return None
    if len(raw) > 1_000_000:
        raise BadInput("request body over 1 MB")
    if "application/json" not in request.headers.get("content-type", ""):
        raise BadInput("send JSON (Content-Type: application/json)")
    import json

    try:
        return json.loads(raw)
    except ValueError:
        raise BadInput("the body is not valid JSON") from None


async def _forward(
    st: ConsoleState,
    service: str,
    method: str,
    path: str,
    token: str,
    *,
    actor: str | None = None,
    params: Any = None,
    body: Any = None,
) -> Response:
    kw: dict[str, Any] = {}
    if params:
        kw["params"] = params
    if body is not None:
        kw["json"] = body
    cm = st.upstreams.stream(service, method, path, token, actor=actor, **kw)
    resp = await cm.__aenter__()
    ctype = resp.headers.get("content-type", "application/json")
    headers = {"Cache-Control": "no-store"}
    if any(ctype.startswith(t) for t in _STREAMED) and resp.status_code == 200:
        if disp := resp.headers.get("content-disposition"):
            headers["Content-Disposition"] = disp
        headers["X-Accel-Buffering"] = "no"

        async def relay() -> AsyncIterator[bytes]:
            try:
                async for chunk in resp.aiter_raw():
                    yield chunk
            finally:
                await cm.__aexit__(None, None, None)

        return StreamingResponse(relay(), status_code=200, media_type=ctype, headers=headers)
    try:
        content = await resp.aread()
    finally:
        await cm.__aexit__(None, None, None)
    return Response(content=content, status_code=resp.status_code, media_type=ctype, headers=headers)


def build_router() -> APIRouter:
    router = APIRouter()

    # -- pages ---------------------------------------------------------------------------
    @router.get("/", include_in_schema=False)
    async def home(request: Request) -> Response:
        s = _session(request)
        if s is None:
            return RedirectResponse("/login", status_code=303)
        return RedirectResponse("/connectors" if s.role == "admin" else "/me", status_code=303)

    @router.get("/login", include_in_schema=False)
    async def login_form(request: Request) -> HTMLResponse:
        oidc = state_of(request).oidc
        return HTMLResponse(login_page(oidc.name if oidc else None))

    def admin_page(page: str, title: str) -> None:
        async def view(request: Request) -> Response:
            s = _session(request)
            if s is None:
                return RedirectResponse("/login", status_code=303)
            if s.role != "admin":
                return HTMLResponse(forbidden_page(s), status_code=403)
            return HTMLResponse(shell(page, title, s))

        router.add_api_route(f"/{page}", view, methods=["GET"], include_in_schema=False)

    for page, title in ADMIN_PAGES:
        admin_page(page, title)

    @router.get("/me", include_in_schema=False)
    async def me_page(request: Request) -> Response:
        s = _session(request)
        if s is None:
            return RedirectResponse("/login", status_code=303)
        return HTMLResponse(shell("me", "My connections", s))

    # -- session -------------------------------------------------------------------------
    @router.post("/api/login", tags=["session"])
    async def login(request: Request) -> JSONResponse:
        _same_site(request)
        raw = await _body(request)
        if not isinstance(raw, dict):
            raise BadInput("send {kind, secret}")
        body = Login.model_validate(raw)
        st = state_of(request)
        secret = body.secret.get_secret_value().strip()
        user: str | None = None
        if body.kind == "admin":
            r = await st.upstreams.request("connectors", "GET", "/v1/connectors", secret, params={"status": "all"})
            if r.status_code == 401:
                raise Unauthorized("that admin token was refused")
            if r.status_code != 200:
                raise WardenError(f"the connectors service answered {r.status_code} while checking the token")
            role: Literal["admin", "user"] = "admin"
            via: Literal["token", "agent_key"] = "token"
        else:
            if not secret.startswith("wk_"):
                raise BadInput("an agent key starts with wk_")
            r = await st.upstreams.request("proxy", "GET", "/v1/me/connections", secret, actor=None)
            if r.status_code == 401:
                raise Unauthorized("that agent key was refused (unknown or revoked)")
            if r.status_code == 403:
                raise Forbidden("this agent key acts for no user: ask an admin for a key bound to you")
            if r.status_code != 200:
                raise WardenError(f"the proxy answered {r.status_code} while checking the key")
            conns = r.json().get("connections") or []
            user = conns[0]["user"] if conns else f"key {secret[:11]}…"
            role = "user"
            via = "agent_key"
        sid, session, dropped = st.sessions.open(role, SecretStr(secret), user=user, via=via)
        await st.revoke_try_keys(dropped)
        resp = JSONResponse({"role": role, "label": session.label, "csrf": session.csrf})
        set_session_cookie(resp, st, sid, session)
        return resp

    @router.post("/api/logout", tags=["session"])
    async def logout(request: Request) -> JSONResponse:
        s = _changing(request)
        st = state_of(request)
        st.sessions.close(request.cookies.get(COOKIE))
        await st.revoke_try_keys([s])
        resp = JSONResponse({"signed_out": True})
        resp.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=st.cookie_secure)
        return resp

    @router.get("/api/session", tags=["session"])
    async def session_info(request: Request) -> dict[str, Any]:
        s = _need(request)
        return {
            "role": s.role,
            "label": s.label,
            "user": s.user,
            "via": s.via,
            "csrf": s.csrf,
            "mcp_url": state_of(request).mcp_url,
        }

    @router.get("/api/health", tags=["session"])
    async def health(request: Request) -> dict[str, Any]:
        _need(request)
        st = state_of(request)
        return {n: (await st.upstreams.health(n)) or "ok" for n in SERVICE_NAMES}

    # -- admin: the four services' APIs ----------------------------------------------------
    @router.api_route("/api/s/{service}/{path:path}", methods=["GET", "POST", "PATCH", "PUT", "DELETE"], tags=["api"])
    async def forward(service: str, path: str, request: Request) -> Response:
        if request.method == "GET":
            s = _need(request, "admin")
        else:
            s = _changing(request, "admin")
        if service not in SERVICE_NAMES:
            raise BadInput(f"unknown service {service!r}")
        if not _SAFE_PATH.match(path) or ".." in path:
            raise BadInput("only the services' /v1 API is forwarded")
        body = None if request.method == "GET" else await _body(request)
        return await _forward(
            state_of(request), service, request.method, f"/{path}", s.secret.get_secret_value(), actor=s.actor,
            params=list(request.query_params.multi_items()), body=body,
        )  # fmt: skip

    @router.post("/api/try/{tool}", tags=["api"])
    async def try_tool(tool: str, request: Request) -> Response:
        """Run a tool as a profile (and user): the console makes an agent key for this session
        and that (profile, user) once, keeps it here, revokes it at sign-out."""
        s = _changing(request, "admin")
        raw = await _body(request)
        if not isinstance(raw, dict):
            raise BadInput("send {profile, user?, arguments}")
        profile, user, arguments = raw.get("profile"), raw.get("user") or None, raw.get("arguments", {})
        if not isinstance(profile, str) or not _NAME.match(profile):
            raise BadInput("choose a profile")
        if user is not None and (not isinstance(user, str) or len(user) > 200):
            raise BadInput("user: at most 200 characters")
        if not isinstance(arguments, dict):
            raise BadInput("arguments must be a JSON object")
        if not _NAME.match(tool):
            raise BadInput("not a tool name")
        st = state_of(request)
        admin = s.secret.get_secret_value()
        k = s.try_keys.get((profile, user or ""))
        if k is None:
            body: dict[str, Any] = {"name": f"console try-it ({s.label})", "profile": profile}
            if user:
                body["user"] = user
            r = await st.upstreams.request("proxy", "POST", "/v1/agent-keys", admin, actor=s.actor, json=body)
            if r.status_code != 201:
                return Response(r.content, status_code=r.status_code, media_type="application/json")
            made = r.json()
            k = TryKey(key=SecretStr(made["key"]), prefix=made["prefix"])
            s.try_keys[(profile, user or "")] = k
        return await _forward(
            st,
            "proxy",
            "POST",
            f"/v1/tools/{tool}/call/stream",
            k.key.get_secret_value(),
            body={"arguments": arguments},
        )

    # -- end users: their own connections -------------------------------------------------
    @router.api_route("/api/me/connections", methods=["GET"], tags=["me"])
    @router.api_route("/api/me/connections/{connector}", methods=["GET", "DELETE"], tags=["me"])
    @router.api_route("/api/me/connections/{connector}/consent", methods=["POST"], tags=["me"])
    async def me(request: Request, connector: str | None = None) -> Response:
        s = _need(request, "user") if request.method == "GET" else _changing(request, "user")
        if connector is not None and not _NAME.match(connector):
            raise BadInput("not a connector name")
        path = "/v1/me/connections" + request.url.path.removeprefix("/api/me/connections")
        return await _forward(state_of(request), "proxy", request.method, path, s.secret.get_secret_value())

    return router


def set_session_cookie(resp: Response, st: ConsoleState, sid: str, session: Session) -> None:
    resp.set_cookie(
        COOKIE,
        sid,
        max_age=max(1, int(session.expires_at - time.time())),
        httponly=True,
        samesite="strict",
        secure=st.cookie_secure,
        path="/",
    )
