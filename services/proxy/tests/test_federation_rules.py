"""Pure rules of the MCP endpoint's federation and relay: shown names, template routing,
log levels, subscriptions. Routing with real upstreams is in tests/e2e/test_mcp_federation.py."""

from __future__ import annotations

import pytest
from mcp.shared.exceptions import MCPError
from warden_proxy.federation import _shown, _template_regex
from warden_proxy.relay import LogLevels
from warden_proxy.subscriptions import Subscriptions


def test_names_are_prefixed_only_when_asked_or_repeated() -> None:
    aliases = {"c1": "notion", "c2": "github"}
    items = [("c1", "search"), ("c2", "search"), ("c1", "pages")]
    assert _shown(items, aliases, False, "__") == ["notion__search", "github__search", "pages"]
    assert _shown(items, aliases, True, "__") == ["notion__search", "github__search", "notion__pages"]
    uris = [("c1", "file:///a"), ("c2", "file:///a"), ("c2", "gh://b")]
    assert _shown(uris, aliases, False, "+") == ["notion+file:///a", "github+file:///a", "gh://b"]


def test_uri_templates_match_one_segment_per_simple_variable() -> None:
    rx = _template_regex("test://template/{id}/data")
    assert rx.match("test://template/123/data")
    assert not rx.match("test://template/1/2/data")
    assert not rx.match("test://template//data")
    assert _template_regex("file:///{+path}").match("file:///a/b/c.txt")
    assert _template_regex("api://items{?q,page}").match("api://items?q=x&page=2")
    assert not _template_regex("a.b://{x}").match("aXb://y")  # literal parts are literal


def test_log_levels_filter_per_session_and_default_to_everything() -> None:
    levels = LogLevels()
    assert levels.allows("s1", "debug")
    levels.set("s1", "warning")
    assert not levels.allows("s1", "info")
    assert levels.allows("s1", "warning") and levels.allows("s1", "emergency")
    assert levels.allows("s2", "debug")  # another session is not affected


class _Session:
    def __init__(self, alive: bool = True) -> None:
        self.alive = alive
        self.got: list[str] = []

    async def send_resource_updated(self, uri: str) -> None:
        if not self.alive:
            raise ConnectionError("gone")
        self.got.append(uri)


async def test_one_upstream_subscription_per_key_fanned_out_and_capped() -> None:
    calls: list[str] = []

    def upstream(what: str):  # type: ignore[no-untyped-def]
        async def go() -> None:
            calls.append(what)

        return go

    subs = Subscriptions(max_subscribers=2)
    key = ("c", "u", "test://x")
    a, b, gone = _Session(), _Session(), _Session(alive=False)
    await subs.add(key, "a", a, "test://x", upstream("sub"))  # type: ignore[arg-type]
    await subs.add(key, "b", b, "c+test://x", upstream("sub"))  # type: ignore[arg-type]
    assert calls == ["sub"]  # shared upstream
    with pytest.raises(MCPError):
        await subs.add(("c", "u", "test://y"), "gone", gone, "test://y", upstream("sub"))  # type: ignore[arg-type]
    await subs.updated("c", "u", "test://x")
    await subs.updated("c", "other-user", "test://x")  # another user's copy: nobody here
    assert a.got == ["test://x"] and b.got == ["c+test://x"]
    await subs.remove(key, "a", upstream("unsub"))
    assert calls == ["sub"]  # b still subscribed
    b.alive = False
    await subs.updated("c", "u", "test://x")  # b is gone: dropped, room for another
    await subs.add(("c", "u", "test://y"), "a", a, "test://y", upstream("sub"))  # type: ignore[arg-type]
    await subs.remove(("c", "u", "test://y"), "a", upstream("unsub"))
    assert calls == ["sub", "sub", "unsub"]
