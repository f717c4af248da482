"""Which upstream refusals are a scope step-up (pure logic)."""

from __future__ import annotations

from warden_proxy.consent import insufficient_scope as _insufficient_scope
from warden_proxy.upstream import UpstreamUnauthorized


def _refusal(status: int, www: str | None) -> UpstreamUnauthorized:
    return UpstreamUnauthorized("refused", www_authenticate=www, status=status)


def test_a_403_insufficient_scope_challenge_names_the_required_scopes() -> None:
    www = 'Bearer error="insufficient_scope", scope="mcp:basic mcp:write", resource_metadata="https://x/prm"'
    assert _insufficient_scope(_refusal(403, www)) == ("mcp:basic", "mcp:write")


def test_other_refusals_are_not_a_step_up() -> None:
    assert _insufficient_scope(_refusal(401, 'Bearer error="insufficient_scope", scope="a"')) is None
    assert _insufficient_scope(_refusal(403, 'Bearer error="invalid_token", scope="a"')) is None
    assert _insufficient_scope(_refusal(403, None)) is None
    assert _insufficient_scope(_refusal(403, 'Bearer error="insufficient_scope"')) is None  # nothing to ask for


def test_scope_tokens_that_are_not_rfc6749_are_dropped() -> None:
    www = 'Bearer error="insufficient_scope", scope="ok:1 bad\\"quote ok:2"'
    assert _insufficient_scope(_refusal(403, www)) == ("ok:1", "ok:2")
