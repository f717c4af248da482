"""`warden tools` and `warden profiles` against a running registry."""

from __future__ import annotations

import asyncio

from registry_support import ProxyStandIn, Registry, mcp_tool, mcp_upstream, unique
from typer.testing import CliRunner
from warden_registry.cli import profiles_app, tools_app

OBJ = {"type": "object", "properties": {"q": {"type": "string"}}}


async def test_cli_discovers_registers_grants_and_revokes(registry: Registry, proxy: ProxyStandIn) -> None:
    runner = CliRunner()
    env = {"WARDEN_REGISTRY_URL": registry.url, "WARDEN_ADMIN_TOKEN": registry.token}

    async def cli(app, *args: str, code: int = 0) -> str:  # type: ignore[no-untyped-def]
        # the registry serves on this event loop: the CLI's blocking calls run in a thread
        res = await asyncio.to_thread(runner.invoke, app, list(args), env=env)
        assert res.exit_code == code, res.output
        return res.output

    c = unique()
    catalog = [mcp_tool("get_doc", "Get a doc.", OBJ), mcp_tool("delete_doc", "Delete a doc.", OBJ)]
    async with mcp_upstream(catalog) as up:
        proxy.upstreams[c] = up.url
        out = await cli(tools_app, "discover", c)
        assert f"read  {c}__get_doc" in out and f"write {c}__delete_doc" in out
        out = await cli(tools_app, "register", c, "get_doc", "--favorite", "get_doc", "--manual", "delete_doc")
        assert f"registered {c}__get_doc" in out and f"registered {c}__delete_doc" in out
        assert "favorite" in await cli(tools_app, "list", "--connector", c)
        assert '"auto_approve": false' in await cli(tools_app, "show", f"{c}__delete_doc")
        assert "drifted" not in await cli(tools_app, "refresh", c)

    p = unique("p")
    await cli(profiles_app, "create", p, "--description", "cli test")
    out = await cli(profiles_app, "grant", p, f"{c}__*", "--read-only", "--reason", "docs team")
    grant_id = out.strip().rsplit(" ", 1)[-1]
    out = await cli(profiles_app, "show", p)
    assert f"{c}__get_doc" in out and f"{c}__delete_doc" not in out.split("visible:")[1]
    assert f"{c}__get_doc" in await cli(tools_app, "search", p, "get a doc")
    out = await cli(profiles_app, "set", p, "--tool-names", "bare")
    assert "tool_names=bare" in out
    assert "  get_doc" in (await cli(profiles_app, "show", p)).split("visible:")[1]
    await cli(profiles_app, "revoke", p, grant_id)
    assert f"{c}__get_doc" not in (await cli(profiles_app, "show", p)).split("visible:")[1]
    # errors are one clear line and a non-zero exit
    out = await cli(profiles_app, "create", p, code=1)
    assert "409" in out and "exists" in out
    res = await asyncio.to_thread(
        runner.invoke, tools_app, ["list"], env={**env, "WARDEN_ADMIN_TOKEN": "wrong-token-00000000"}
    )
    assert res.exit_code == 1 and "401" in res.output


async def test_cli_sets_a_tools_operation_and_flags(registry: Registry, proxy: ProxyStandIn) -> None:
    runner = CliRunner()
    env = {"WARDEN_REGISTRY_URL": registry.url, "WARDEN_ADMIN_TOKEN": registry.token}

    async def cli(*args: str, code: int = 0) -> str:
        res = await asyncio.to_thread(runner.invoke, tools_app, list(args), env=env)
        assert res.exit_code == code, res.output
        return res.output

    c = unique()
    async with mcp_upstream([mcp_tool("get_doc", "Get a doc.", OBJ)]) as up:
        proxy.upstreams[c] = up.url
        await cli("register", c, "get_doc")
    name = f"{c}__get_doc"
    out = await cli("set", name, "--operation", "write", "--manual", "--deferred", "--disabled", "--favorite")
    assert out.startswith("write") and {"manual", "deferred", "disabled", "favorite"} <= set(out.split()[-1].split(","))
    shown = await cli("show", name)
    assert '"operation": "write"' in shown and '"auto_approve": false' in shown and '"enabled": false' in shown
    out = await cli("set", name, "--operation", "read", "--auto-approve", "--listed", "--enabled", "--no-favorite")
    assert out.startswith("read") and out.split()[-1] == name  # no flag left
    assert "--operation" in await cli("set", name, code=2)  # nothing to change: a usage error, not a no-op
    assert "read or write" in await cli("set", name, "--operation", "delete", code=2)
    assert "404" in await cli("set", f"{c}__nope", "--favorite", code=1)
