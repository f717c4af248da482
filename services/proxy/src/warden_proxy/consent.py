"""Consent and scope step-up inside a call: when connectors answers `consent_required` with a
URL (a user's connection is missing, or an upstream asked for more scopes), show it to the
caller, wait for that connection (its `connector.connected` event, or connectors itself when
events were missed), then finish the call; a refused consent ends the wait at once.

A mixin of `CallPipeline` (service.py). No FastAPI, no MCP server machinery.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NoReturn

import mcp_types as types
from warden_common.bus import Bus
from warden_common.contracts import CREDENTIALS_GET, Credential, CredentialRequest, ErrorCode, ResolvedTool
from warden_common.contracts.credentials import SCOPE_TOKEN_PATTERN
from warden_common.errors import WardenError
from warden_common.metrics import CONSENT_WAIT, error_outcome, timed
from warden_common.rfc6750 import parse_bearer_challenge

from warden_proxy.agents import Principal
from warden_proxy.approvals import PROGRESS_EVERY_S
from warden_proxy.errors import ConsentFailed, ConsentTimedOut, Unavailable
from warden_proxy.upstream import UpstreamUnauthorized, credential_digest

__all__ = ["ConsentFlow", "insufficient_scope"]


class ConsentFlow:
    bus: Bus
    consent_wait_s: float
    max_consents: int
    _consent_waiters: dict[tuple[str, str], asyncio.Event]
    _stale: dict[tuple[str, str], str]
    _consent_failed: dict[tuple[str, str], str]

    if TYPE_CHECKING:  # provided by CallPipeline
        _creds: Any
        credential: Callable[..., Awaitable[Credential]]
        _call_upstream: Callable[..., Awaitable[types.CallToolResult]]
        recheck: Callable[..., Awaitable[ResolvedTool]]

    async def step_up(
        self, connector: str, principal: Principal, scopes: tuple[str, ...], failed: Credential
    ) -> NoReturn:
        """Hand an upstream's `insufficient_scope` to connectors; it always refuses, with the
        consent that grants the scopes. Never served from or stored in the cache. Until that
        consent lands, the connection's current credential is `failed`: waiting for the
        consent must not take it for the new one."""
        user = principal.user or ""
        self._creds.drop(lambda k: k[0] == connector and k[1] == user)
        self._stale[(connector, user)] = credential_digest(failed)
        await self.bus.request(
            CREDENTIALS_GET,
            CredentialRequest(connector=connector, user=principal.user, jwe=principal.jwe, step_up_scopes=scopes),
        )
        raise Unavailable(f"connector {connector} could not grant the scopes the upstream asks for")

    async def _call_with_consent(
        self,
        tool: ResolvedTool,
        principal: Principal,
        arguments: dict[str, Any],
        progress: Any,
        on_consent: Callable[[str, str], Awaitable[bool]] | None,
        on_consented: Callable[[str], Awaitable[None]] | None = None,
    ) -> types.CallToolResult:
        """Call upstream; when a per-user connection is missing, show the consent URL, wait
        for that user's connection to become active (`on_consented` is told, so the edge can
        say the elicitation is complete), and finish the call (up to 10 times). A wait that
        ends without the connection raises `ConsentTimedOut`, saying after how long."""
        for _ in range(self.max_consents):
            try:
                return await self._call_upstream(tool, principal, arguments, progress)
            except WardenError as e:
                key = (tool.connector, principal.user or "")
                url = e.details.get("consent_url") if e.code == ErrorCode.consent_required else None
                if not url or on_consent is None:
                    self._stale.pop(key, None)  # no consent to wait for: forget a step-up's marker
                    raise
                waiter = self._consent_waiters.setdefault(key, asyncio.Event())
                if not await on_consent(str(url), tool.connector):
                    self._consent_waiters.pop(key, None)
                    self._stale.pop(key, None)
                    raise
                if not await self._wait_connected(tool.connector, principal, waiter, progress):
                    waited = round(self.consent_wait_s)
                    raise ConsentTimedOut(
                        f"timed out after {waited} s waiting for your {tool.connector} connection",
                        details={"consent_url": str(url), "connector": tool.connector, "waited_s": waited},
                    ) from None
                if on_consented is not None:
                    with contextlib.suppress(Exception):
                        await on_consented(tool.connector)
                # the wait may have outlived the grant: resolve and check it again
                tool = await self.recheck(principal.profile, tool.name, after="the consent")
        raise Unavailable(f"gave up after {self.max_consents} consents in one call")

    @timed(CONSENT_WAIT, ok=lambda connected: "connected" if connected else "timeout", error=error_outcome)
    async def _wait_connected(
        self, connector: str, principal: Principal, waiter: asyncio.Event, progress: Any = None
    ) -> bool:
        key = (connector, principal.user or "")
        deadline = time.monotonic() + self.consent_wait_s
        beat = time.monotonic()  # the consent prompt itself was the first word
        try:
            while (left := deadline - time.monotonic()) > 0:
                if progress is not None and time.monotonic() - beat >= PROGRESS_EVERY_S:
                    beat = time.monotonic()
                    with contextlib.suppress(Exception):
                        await progress(0, None, f"waiting for your {connector} connection ({left:.0f}s left)")
                try:
                    await asyncio.wait_for(waiter.wait(), timeout=min(left, 5.0))
                    if (why := self._consent_failed.pop(key, None)) is not None:
                        raise ConsentFailed(f"connecting {connector} failed: {why}; call again to retry")
                    return True
                except TimeoutError:
                    # events can be missed across reconnects: ask connectors directly too
                    # (after a step-up, without a refresh: a refreshed token is not a new consent)
                    stale = self._stale.get(key)
                    try:
                        cred = await self.credential(
                            connector, principal.user, force=stale is None, uncached=True, jwe=principal.jwe
                        )
                    except WardenError:
                        continue
                    if stale is None or credential_digest(cred) != stale:
                        return True
            return False
        finally:
            self._consent_waiters.pop(key, None)
            self._stale.pop(key, None)
            self._consent_failed.pop(key, None)


def insufficient_scope(e: UpstreamUnauthorized) -> tuple[str, ...] | None:
    """The scopes a `403 insufficient_scope` challenge requires (RFC 6750 §3.1, MCP step-up),
    or None when this is not one. Malformed scope tokens are dropped, not forwarded."""
    if e.status != 403:
        return None
    challenge = parse_bearer_challenge(e.www_authenticate)
    if challenge is None or not challenge.insufficient_scope:
        return None
    scopes = tuple(s for s in challenge.scope if _SCOPE_TOKEN.fullmatch(s))[:50]
    return scopes or None


_SCOPE_TOKEN = re.compile(SCOPE_TOKEN_PATTERN)
