"""Single sign-on routes: `GET /login/oidc` starts a sign-in at the issuer the proxy trusts,
`GET /login/oidc/callback` finishes it (`oidc.py` does the protocol) and opens the session.
Both answer pages, not JSON: they are where a browser lands.

An admin's session acts through the console's root admin token under their own name
(`X-Warden-Actor`), as the proxy's /mcp/admin does for an admin-scoped JWT; an end user's,
through their access token, which the proxy checks itself.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from warden_common.errors import BadInput, Forbidden, Unauthorized, WardenError
from warden_common.web import ADMIN_NAME_PATTERN

from warden_console.api import ConsoleState, set_session_cookie, state_of
from warden_console.oidc import FLOW_TTL_S, Identity, UnknownFlow
from warden_console.pages import signed_in_page, sso_error_page
from warden_console.sessions import Session

__all__ = ["OIDC_COOKIE", "build_sso_router"]

log = logging.getLogger(__name__)
# binds a sign-in through the issuer to the browser that started it; SameSite=Lax, as the
# issuer's redirect back is a cross-site navigation (a Strict cookie would not come with it)
OIDC_COOKIE = "warden_oidc"


def build_sso_router() -> APIRouter:
    router = APIRouter()

    @router.get("/login/oidc", include_in_schema=False)
    async def oidc_begin(request: Request, login_hint: str | None = None) -> Response:
        st = state_of(request)
        if st.oidc is None:
            return HTMLResponse(sso_error_page("Single sign-on is not configured on this console."), status_code=404)
        try:
            url, binding = await st.oidc.begin(login_hint)
        except WardenError as e:
            log.warning("console: a sign-in through the issuer could not start: %s", e.message)
            return HTMLResponse(sso_error_page(e.message), status_code=e.http_status)
        resp = RedirectResponse(url, status_code=303)
        resp.set_cookie(
            OIDC_COOKIE,
            binding,
            max_age=FLOW_TTL_S,
            httponly=True,
            samesite="lax",
            secure=st.cookie_secure,
            path="/login/oidc",
        )
        return resp

    @router.get("/login/oidc/callback", include_in_schema=False)
    async def oidc_callback(request: Request) -> Response:
        st = state_of(request)
        if st.oidc is None:
            return HTMLResponse(sso_error_page("Single sign-on is not configured on this console."), status_code=404)
        q = request.query_params
        resp: Response
        spent = True  # the browser's pending sign-in is over (its flow cookie goes)
        try:
            if any(len(q.getlist(k)) > 1 for k in ("state", "code", "iss", "error")):
                raise BadInput("the issuer's answer repeats a parameter: sign in again")
            who = await st.oidc.finish(dict(q), request.cookies.get(OIDC_COOKIE))
            sid, session = await _open_oidc_session(st, who)
        except WardenError as e:
            log.info("console: a sign-in through the issuer was refused: %s", e.message)
            resp = HTMLResponse(sso_error_page(e.message), status_code=e.http_status)
            spent = not isinstance(e, UnknownFlow)
        else:
            resp = HTMLResponse(signed_in_page("/connectors" if session.role == "admin" else "/me"))
            set_session_cookie(resp, st, sid, session)
        if spent:
            resp.delete_cookie(OIDC_COOKIE, path="/login/oidc", httponly=True, samesite="lax", secure=st.cookie_secure)
        return resp

    return router


async def _open_oidc_session(st: ConsoleState, who: Identity) -> tuple[str, Session]:
    """A session for a person the issuer vouched for: an admin acts through the root admin
    token under their own name; an end user through their access token (which the proxy checks
    itself). Each is tried once against a service before the session exists."""
    if who.role == "admin":
        if st.admin_token is None:
            raise Forbidden(
                "the issuer says you are an administrator, but this console has no WARDEN_CONSOLE_ADMIN_TOKEN "
                "to act for you: ask the operator to set it, or sign in with the admin token"
            )
        if not ADMIN_NAME_PATTERN.fullmatch(who.user):
            raise Forbidden(
                f"your user id {who.user[:80]!r} cannot name an administrator in Warden's records "
                "(1-64 letters, digits, . _ @ -): ask the operator to map another claim (OIDC__USER_CLAIM)"
            )
        token = st.admin_token.get_secret_value()
        r = await st.upstreams.request(
            "connectors", "GET", "/v1/connectors", token, actor=who.user, params={"status": "all"}
        )
        if r.status_code == 401:
            raise WardenError("the connectors service refused the console's WARDEN_CONSOLE_ADMIN_TOKEN")
        if r.status_code != 200:
            raise WardenError(f"the connectors service answered {r.status_code} while signing you in")
        sid, session, dropped = st.sessions.open(
            "admin", st.admin_token, actor=who.user, via="oidc", not_after=who.expires_at
        )
    else:
        access = who.access_token.get_secret_value()
        r = await st.upstreams.request("proxy", "GET", "/v1/me/connections", access, actor=None)
        if r.status_code in (401, 403):
            why = _error_message(r) or f"HTTP {r.status_code}"
            raise (Unauthorized if r.status_code == 401 else Forbidden)(
                f"the proxy did not accept your sign-in for your connections: {why}"
            )
        if r.status_code != 200:
            raise WardenError(f"the proxy answered {r.status_code} while signing you in")
        sid, session, dropped = st.sessions.open(
            "user", who.access_token, user=who.user, via="oidc", not_after=who.expires_at
        )
    await st.revoke_try_keys(dropped)
    return sid, session


def _error_message(r: Any) -> str | None:
    try:
        doc = r.json()
    except ValueError:
        return None
    err = doc.get("error") if isinstance(doc, dict) else None
    msg = err.get("message") if isinstance(err, dict) else None
    return str(msg)[:300] if msg else None
