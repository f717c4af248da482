"""The console's one HTTP client to the four services. Every request carries the signed-in
person's credential (for an admin signed in through the OIDC issuer: the root admin token with
`X-Warden-Actor` naming them) and has a timeout; a service that does not answer becomes
`Unavailable` naming it, so every page can say which one is down."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import httpx
from warden_common.errors import Timeout, Unavailable

from warden_console.settings import ServiceUrls

__all__ = ["SERVICE_NAMES", "ServiceName", "Upstreams"]

ServiceName = Literal["connectors", "registry", "proxy", "audit"]
SERVICE_NAMES: tuple[ServiceName, ...] = ("connectors", "registry", "proxy", "audit")
ACTOR: str | None = None  # the admin is known by their own token; a header would rename the root admin


class Upstreams:
    def __init__(self, urls: ServiceUrls, timeout_s: float) -> None:
        self.urls: dict[str, str] = {n: getattr(urls, n) for n in SERVICE_NAMES}
        self.timeout_s = timeout_s
        self.http = httpx.AsyncClient(timeout=timeout_s, trust_env=False, follow_redirects=False)

    def _headers(self, token: str, actor: str | None) -> dict[str, str]:
        h = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        if actor:
            h["X-Warden-Actor"] = actor
        return h

    def _request(self, service: str, method: str, path: str, token: str, actor: str | None, **kw: Any) -> httpx.Request:
        return self.http.build_request(method, f"{self.urls[service]}{path}", headers=self._headers(token, actor), **kw)

    async def request(
        self, service: str, method: str, path: str, token: str, *, actor: str | None = ACTOR, **kw: Any
    ) -> httpx.Response:
        try:
            return await self.http.send(self._request(service, method, path, token, actor, **kw))
        except httpx.TimeoutException:
            raise Timeout(f"the {service} service did not answer within {self.timeout_s:g} s") from None
        except httpx.HTTPError as e:
            raise Unavailable(
                f"the {service} service is not reachable ({type(e).__name__}); it may be down",
                details={"service": service},
            ) from None

    @asynccontextmanager
    async def stream(
        self, service: str, method: str, path: str, token: str, *, actor: str | None = ACTOR, **kw: Any
    ) -> AsyncIterator[httpx.Response]:
        """A streamed response (SSE): the timeout covers connecting and the first byte only."""
        timeout = httpx.Timeout(self.timeout_s, read=None)
        req = self.http.build_request(
            method, f"{self.urls[service]}{path}", headers=self._headers(token, actor), timeout=timeout, **kw
        )
        try:
            resp = await self.http.send(req, stream=True)
        except httpx.TimeoutException:
            raise Timeout(f"the {service} service did not answer within {self.timeout_s:g} s") from None
        except httpx.HTTPError as e:
            raise Unavailable(
                f"the {service} service is not reachable ({type(e).__name__}); it may be down",
                details={"service": service},
            ) from None
        try:
            yield resp
        finally:
            await resp.aclose()

    async def health(self, service: str) -> str | None:
        """None when the service answers /readyz 200, else a short reason."""
        try:
            r = await self.http.get(f"{self.urls[service]}/readyz", timeout=2)
        except httpx.HTTPError as e:
            return f"unreachable ({type(e).__name__})"
        return None if r.status_code == 200 else f"not ready ({r.status_code})"

    async def aclose(self) -> None:
        await self.http.aclose()
