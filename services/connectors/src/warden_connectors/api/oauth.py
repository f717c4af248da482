"""`GET /connect/callback`: the one redirect URI of every connector, and
`GET /connect/start/<nonce>`: where a person's consent link points.

No admin token (it is the browser coming back from the provider): the signed, single-use
state is what authorizes it. A person's consent is also bound to the browser that opened its
start URL (a short-lived httpOnly cookie the callback asks back; issue 16, 10d).

Every outcome is a short status page (HTML, or JSON when the client asks for it); failures
are 4xx with a message a person can act on — never a stack
trace, never a code, token or verifier.
"""

from __future__ import annotations

import html
import logging

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from warden_common.errors import SealError, WardenError

from warden_connectors.api.connectors import svc
from warden_connectors.service import ConnectorService

__all__ = ["build_callback_router"]

log = logging.getLogger(__name__)

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="robots" content="noindex">
<meta name="referrer" content="no-referrer"><title>Warden: {title}</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem}}
h1{{font-size:1.4rem}}.ok{{color:#176f2c}}.err{{color:#a4262c}}</style></head>
<body><h1 class="{cls}">{title}</h1><p>{message}</p></body></html>
"""


_NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def _page(request: Request, status: int, title: str, message: str, **extra: object) -> Response:
    headers = dict(_NO_STORE)
    if "application/json" in request.headers.get("accept", ""):
        body = {"ok": status < 400, "title": title, "message": message, **extra}
        return JSONResponse(body, status_code=status, headers=headers)
    text = _PAGE.format(title=html.escape(title), message=html.escape(message), cls="ok" if status < 400 else "err")
    return HTMLResponse(text, status_code=status, headers=headers)


def build_callback_router() -> APIRouter:
    router = APIRouter(tags=["oauth"])

    @router.get("/connect/start/{nonce}", include_in_schema=True, status_code=302)
    async def start(nonce: str, request: Request, s: ConnectorService = Depends(svc)) -> Response:
        """Bind a person's consent to this browser (a cookie), then go to the provider."""
        try:
            opened = await s.open_consent(nonce, dict(request.cookies))
        except WardenError as e:
            status = e.http_status if 400 <= e.http_status < 600 else 400
            log.info("consent start refused (%s): %s", type(e).__name__, e.message)
            return _page(request, status, "Cannot start the connection", e.message, code=str(e.code))
        r = RedirectResponse(opened.authorize_url, status_code=302, headers=_NO_STORE)
        r.set_cookie(
            opened.cookie_name,
            opened.cookie_value,
            max_age=opened.max_age,
            path="/connect/",
            secure=request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https",
            httponly=True,
            samesite="lax",  # the provider's redirect back is a top-level GET: the cookie comes with it
        )
        return r

    @router.get("/connect/callback", include_in_schema=True)
    async def callback(request: Request, s: ConnectorService = Depends(svc)) -> Response:
        params = {k: v for k, v in request.query_params.items()}
        try:
            connector, user = await s.callback(params, dict(request.cookies))
        except SealError:
            log.warning("oauth callback: a stored secret could not be opened")
            return _page(
                request,
                400,
                "Connection failed",
                "Warden could not open this connector's client; an admin must reconnect it.",
            )
        except WardenError as e:
            status = e.http_status if 400 <= e.http_status < 600 else 400
            log.info("oauth callback refused (%s): %s", type(e).__name__, e.message)
            return _page(request, status, "Connection failed", e.message, code=str(e.code))
        who = f" for {user}" if user else ""
        return _page(
            request,
            200,
            "Connected",
            f"{connector} is connected{who}. You can close this window and go back to your agent.",
            connector=connector,
            user=user,
        )

    return router
