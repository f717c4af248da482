"""How a consent URL reaches an MCP caller, shared by the SDK path (`mcp_endpoint`) and the
lean path (`mcp_fast`):

- a 2025-11-25 session that declares URL elicitation: `elicitation/create` (mode url) on the
  call's own POST stream (the GET stream when that fails), then
  `notifications/elicitation/complete` once the connection lands;
- a 2026-07-28 client that declares URL elicitation: an `input_required` result carrying the
  URL elicitation under `CONSENT_INPUT`; the client opens it and retries with its answer, and
  the retry waits for the connection and finishes the call (stateless: nothing to keep);
- a client that asked for progress: the URL in a progress message at once;
- anyone else: the URL in the tool result.
"""

from __future__ import annotations

from typing import Any

import mcp_types as types
from warden_common.contracts import ErrorCode
from warden_common.errors import WardenError

__all__ = [
    "CONSENT_INPUT",
    "ModernConsent",
    "consent_input_required",
    "consent_message",
    "consent_text",
    "declares_url_elicitation",
]

CONSENT_INPUT = "warden_consent"
"""The key of the consent elicitation in an `input_required` result (and of its answer)."""


def consent_message(connector: str | None, url: str) -> str:
    return f"Connect your {connector + ' ' if connector else ''}account to continue: {url}"


def declares_url_elicitation(caps: Any) -> bool:
    """Whether client capabilities (a model or the raw envelope dict) declare URL elicitation."""
    if isinstance(caps, dict):
        elicitation = caps.get("elicitation")
        return isinstance(elicitation, dict) and isinstance(elicitation.get("url"), dict)
    elicitation = getattr(caps, "elicitation", None) if caps is not None else None
    return elicitation is not None and getattr(elicitation, "url", None) is not None


def consent_input_required(connector: str, url: str) -> types.InputRequiredResult:
    """The 2026-07-28 answer to a first `consent_required`: the URL elicitation the client
    completes before it retries the call (with its answer under `CONSENT_INPUT`)."""
    params = types.ElicitRequestURLParams(message=consent_message(connector, url), url=url)
    return types.InputRequiredResult(input_requests={CONSENT_INPUT: types.ElicitRequest(params=params)})


class ModernConsent:
    """`on_consent` for a 2026-07-28 call. Its retry carries the answer to the elicitation
    (`answer`): accept means wait for the connection. Without one, a client that declares URL
    elicitation is asked through `input_required` (`asked` holds what to ask; the call ends
    now), one that asked for progress sees the URL in a progress message, else the URL goes in
    the result."""

    def __init__(self, caps: Any, answer: Any, progress: Any = None) -> None:
        self.url_elicitation = declares_url_elicitation(caps)
        self.answer = answer
        self.progress = progress
        self.asked: tuple[str, str] | None = None

    async def __call__(self, url: str, connector: str) -> bool:
        if self.answer is not None:  # the prompt was shown in the round before
            action = (
                self.answer.get("action") if isinstance(self.answer, dict) else getattr(self.answer, "action", None)
            )
            self.answer = None  # a second consent in the same call is asked again
            if action != "accept":
                return False
            if self.progress is not None:
                await self.progress(0, None, consent_message(connector, url))
            return True
        if self.url_elicitation:
            self.asked = (connector, url)
            return False
        if self.progress is not None:
            await self.progress(0, None, consent_message(connector, url))
            return True
        return False


def consent_text(e: WardenError) -> str:
    """The tool result's text for a refused call: the consent URL when there is one, and, when
    the call waited for it, that the wait timed out and after how long."""
    url = e.details.get("consent_url") if e.code == ErrorCode.consent_required else None
    if not url:
        return e.message
    if (waited := e.details.get("waited_s")) is not None:
        return (
            f"The call timed out after {waited} s waiting for the connection. Open {url} to connect, then call again."
        )
    return f"A connection is required before this tool can run. Open {url} to connect, then call again."
