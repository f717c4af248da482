"""Tool search through the hybrid engine (when installed), on its own root and database:
the engine's index is built in the background, and a search never returns a tool the
profile may not use."""

from __future__ import annotations

import pytest
from registry_support import (
    fresh_database,
    mcp_tool,
    mcp_upstream,
    poll_until,
    proxy_stand_in,
    registry_settings,
    run_registry,
    subject_root,
    unique,
)
from warden_registry.searching import load_engine

OBJ = {"type": "object", "properties": {"text": {"type": "string"}}}


@pytest.fixture(scope="module")
def hybrid_available() -> None:
    engine = load_engine("hybrid")
    if engine.mode != "hybrid":
        pytest.skip(f"hybrid search engine not available: {engine.reason}")


async def test_hybrid_search_ranks_by_meaning_and_stays_within_grants(hybrid_available: None, nats_url: str) -> None:
    catalog = [
        mcp_tool("send_message", "Send a message to a Slack channel.", OBJ),
        mcp_tool("post_tweet", "Publish a short post on the social network.", OBJ),
        mcp_tool("get_weather", "Current weather and forecast for a city.", OBJ),
        mcp_tool("delete_file", "Remove a file from the shared drive.", OBJ),
    ]
    async with (
        subject_root(nats_url) as root,
        fresh_database() as dsn,
        proxy_stand_in(nats_url, root) as proxy,
        mcp_upstream(catalog) as up,
        run_registry(registry_settings(nats_url, root, dsn, search_engine="hybrid")) as reg,
    ):
        c = unique()
        proxy.upstreams[c] = up.url
        await reg.ok(
            "POST", f"/v1/connectors/{c}/tools", json={"tools": [{"name": t.name, "deferred": True} for t in catalog]}
        )
        p = unique("p")
        await reg.ok("POST", "/v1/profiles", json={"name": p})
        for name in ("send_message", "get_weather", "delete_file"):
            await reg.ok("POST", f"/v1/profiles/{p}/grants", json={"tool": f"{c}__{name}", "reason": "test"})

        async def hybrid_ready() -> bool:
            res = await reg.ok("POST", f"/v1/profiles/{p}/search", json={"query": "chat", "k": 3})
            return bool(res["mode"] == "hybrid")

        await poll_until(hybrid_ready, timeout=60)  # the background indexer embeds the catalog
        res = await reg.ok("POST", f"/v1/profiles/{p}/search", json={"query": "notify my team in a chat room", "k": 4})
        names = [t["name"] for t in res["tools"]]
        assert names[0] == f"{c}__send_message"  # no shared word: found by meaning
        assert f"{c}__post_tweet" not in names  # not granted: never returned
        assert set(names) <= {f"{c}__send_message", f"{c}__get_weather", f"{c}__delete_file"}
        ready = await reg.http.get("/readyz")
        assert ready.json()["checks"]["search"] == "ok"
