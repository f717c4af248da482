"""Pure rules of the MCP endpoint's federation and relay: shown names, template routing,
log levels. Routing with real upstreams is in tests/e2e/test_mcp_federation.py."""

from __future__ import annotations

from warden_proxy.federation import _shown, _template_regex
from warden_proxy.relay import LogLevels


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
