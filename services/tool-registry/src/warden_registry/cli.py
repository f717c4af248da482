"""`warden tools …` and `warden profiles …`: the registry's HTTP API from a terminal."""

from __future__ import annotations

import json
from typing import Any

import httpx
import typer

__all__ = ["profiles_app", "tools_app"]

tools_app = typer.Typer(no_args_is_help=True, help="Discover, register and inspect tools (registry).")
profiles_app = typer.Typer(no_args_is_help=True, help="Behavior profiles and their grants (registry).")

URL = typer.Option("http://127.0.0.1:8082", "--url", envvar="WARDEN_REGISTRY_URL", help="registry URL")
TOKEN = typer.Option("", "--token", envvar="WARDEN_ADMIN_TOKEN", help="admin token", show_default=False)
JSON = typer.Option(False, "--json", help="print the API's JSON answer")


def _req(method: str, url: str, token: str, **kw: Any) -> Any:
    try:
        r = httpx.request(method, url, headers={"Authorization": f"Bearer {token}"}, timeout=120, **kw)
    except httpx.HTTPError as e:
        typer.echo(f"error: cannot reach the registry at {url}: {type(e).__name__}", err=True)
        raise typer.Exit(2) from None
    if r.status_code >= 400:
        try:
            msg = r.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            msg = r.text[:300]
        typer.echo(f"error ({r.status_code}): {msg}", err=True)
        raise typer.Exit(1)
    return r.json() if r.content else None


def _dump(doc: Any) -> None:
    typer.echo(json.dumps(doc, indent=2, default=str))


def _flags(t: dict[str, Any]) -> str:
    marks = [
        ("deferred", t.get("deferred")),
        ("favorite", t.get("favorite")),
        ("disabled", t.get("enabled") is False),
        ("held", t.get("held")),
        ("drifted", t.get("drift") is not None and not t.get("held")),
        ("missing", t.get("missing")),
        ("bad-schema", t.get("schema_valid") is False),
        ("bad-name", t.get("name_valid") is False),
        ("manual", t.get("auto_approve") is False),
    ]
    return ",".join(m for m, on in marks if on)


# -- tools -------------------------------------------------------------------------------------


@tools_app.command("discover")
def discover(
    connector: str,
    alias: str = typer.Option(None, help="register under this alias (default: the connector name)"),
    as_json: bool = JSON,
    url: str = URL,
    token: str = TOKEN,
) -> None:
    """List CONNECTOR's tools through the proxy, each with its read/write fact."""
    out = _req("POST", f"{url}/v1/connectors/{connector}/discover", token, params={"alias": alias} if alias else {})
    if as_json:
        return _dump(out)
    for t in out["tools"]:
        mark = "registered" if t["registered"] else ""
        typer.echo(f"{t['operation']:<5} {t['suggested_name']:<50} {mark:<10} {_flags(t)}")
    typer.echo(f"{len(out['tools'])} tools")


@tools_app.command("register")
def register(
    connector: str,
    names: list[str] = typer.Argument(None, help="upstream tool names (default: all)"),
    alias: str = typer.Option(None, help="name tools <alias>__<tool> (default: the connector name)"),
    read: list[str] = typer.Option([], "--read", help="mark this tool a read (repeatable)"),
    write: list[str] = typer.Option([], "--write", help="mark this tool a write (repeatable)"),
    defer: list[str] = typer.Option([], "--defer", help="list this tool only through tool_search"),
    favorite: list[str] = typer.Option([], "--favorite", help="list this tool first"),
    manual: list[str] = typer.Option([], "--manual", help="calls of this tool wait for an approval"),
    auto_approve_default: bool = typer.Option(
        None, "--auto-approve/--no-auto-approve", help="the connector's default for its tools"
    ),
    cache: bool = typer.Option(None, "--cache/--no-cache", help="cache listings, or ask the upstream each time"),
    url: str = URL,
    token: str = TOKEN,
) -> None:
    """Register CONNECTOR's tools (all of them, or NAMES)."""
    body: dict[str, Any] = {}
    if alias:
        body["alias"] = alias
    if auto_approve_default is not None:
        body["auto_approve_default"] = auto_approve_default
    if cache is not None:
        body["cache_enabled"] = cache
    chosen = list(names or [])
    flagged = [*read, *write, *defer, *favorite, *manual]
    if flagged and not chosen:  # all of them, some with facts: name every tool
        found = _req("POST", f"{url}/v1/connectors/{connector}/discover", token)["tools"]
        chosen = [t["name"] for t in found if not t["registered"] and t["name_valid"]]
    chosen += [n for n in dict.fromkeys(flagged) if n not in chosen]
    if chosen:
        tools = []
        for n in chosen:
            sel: dict[str, Any] = {"name": n, "deferred": n in defer, "favorite": n in favorite}
            if n in read or n in write:
                sel["operation"] = "read" if n in read else "write"
            if n in manual:
                sel["auto_approve"] = False
            tools.append(sel)
        body["tools"] = tools
    out = _req("POST", f"{url}/v1/connectors/{connector}/tools", token, json=body)
    for n in out["registered"]:
        typer.echo(f"registered {n}")
    for s in out.get("skipped", []):
        typer.echo(f"skipped {s['name']}: {s['reason']}", err=True)


@tools_app.command("list")
def list_tools(
    connector: str = typer.Option(None),
    q: str = typer.Option(None, help="text in the name or description"),
    held: bool = typer.Option(None, "--held/--not-held"),
    deferred: bool = typer.Option(None, "--deferred/--not-deferred"),
    as_json: bool = JSON,
    url: str = URL,
    token: str = TOKEN,
) -> None:
    """List registered tools."""
    params = {
        k: v for k, v in {"connector": connector, "q": q, "held": held, "deferred": deferred}.items() if v is not None
    }
    out = _req("GET", f"{url}/v1/tools", token, params=params)
    if as_json:
        return _dump(out)
    for t in out:
        typer.echo(f"{t['operation']:<5} {t['name']:<50} {_flags(t)}")


@tools_app.command("show")
def show(name: str, url: str = URL, token: str = TOKEN) -> None:
    """Show one tool: schema, facts, and any upstream change waiting for approval."""
    _dump(_req("GET", f"{url}/v1/tools/{name}", token))


@tools_app.command("set")
def set_tool(
    name: str,
    operation: str | None = typer.Option(None, "--operation", help="read | write: the fact grants and approvals use"),
    auto_approve: bool | None = typer.Option(
        None, "--auto-approve/--manual", help="run without an approval, or hold every call for one"
    ),
    deferred: bool | None = typer.Option(None, "--deferred/--listed", help="behind tool_search, or in tools/list"),
    enabled: bool | None = typer.Option(None, "--enabled/--disabled", help="a disabled tool is refused to everyone"),
    favorite: bool | None = typer.Option(None, "--favorite/--no-favorite"),
    as_json: bool = JSON,
    url: str = URL,
    token: str = TOKEN,
) -> None:
    """Change a registered tool's operation fact or its flags (only the options given)."""
    if operation is not None and operation not in ("read", "write"):
        raise typer.BadParameter(f"{operation!r}: read or write", param_hint="--operation")
    body = {
        k: v
        for k, v in {
            "operation": operation,
            "auto_approve": auto_approve,
            "deferred": deferred,
            "enabled": enabled,
            "favorite": favorite,
        }.items()
        if v is not None
    }
    if not body:
        raise typer.BadParameter(
            "give at least one of --operation, --auto-approve/--manual, --deferred/--listed, "
            "--enabled/--disabled, --favorite/--no-favorite"
        )
    t = _req("PATCH", f"{url}/v1/tools/{name}", token, json=body)
    if as_json:
        return _dump(t)
    typer.echo(f"{t['operation']:<5} {t['name']:<50} {_flags(t)}")


@tools_app.command("search")
def search(
    profile: str, query: str, k: int = typer.Option(5, "-k", min=1, max=50), url: str = URL, token: str = TOKEN
) -> None:
    """Search the tools PROFILE may use, as an agent's tool_search would."""
    out = _req("POST", f"{url}/v1/profiles/{profile}/search", token, json={"query": query, "k": k})
    for t in out["tools"]:
        typer.echo(f"{t['name']:<50} {t['description'][:70]}")
    typer.echo(f"({out['mode']} search)")


@tools_app.command("refresh")
def refresh(connector: str, url: str = URL, token: str = TOKEN) -> None:
    """List CONNECTOR again: flag (and hold) drifted tools, hide tools gone upstream."""
    out = _req("POST", f"{url}/v1/connectors/{connector}/refresh", token)
    for key in ("drifted", "restored", "missing"):
        for n in out[key]:
            typer.echo(f"{key:<8} {n}")
    if out["unregistered_upstream"]:
        typer.echo(f"{len(out['unregistered_upstream'])} upstream tools not registered")


@tools_app.command("reapprove")
def reapprove(name: str, url: str = URL, token: str = TOKEN) -> None:
    """Accept a drifted tool's new description and schema, and release it to agents."""
    t = _req("POST", f"{url}/v1/tools/{name}/reapprove", token)
    typer.echo(f"re-approved {t['name']}")


# -- profiles ----------------------------------------------------------------------------------


_TOOL_NAMES_HELP = "namespaced (<alias>__<tool>) or bare (the upstream's name while unambiguous in the profile)"


@profiles_app.command("create")
def create(
    name: str,
    description: str = typer.Option(""),
    tool_names: str = typer.Option("namespaced", help=_TOOL_NAMES_HELP),
    url: str = URL,
    token: str = TOKEN,
) -> None:
    """Create a profile; it sees nothing until granted."""
    body = {"name": name, "description": description, "tool_names": tool_names}
    _req("POST", f"{url}/v1/profiles", token, json=body)
    typer.echo(f"created profile {name}")


@profiles_app.command("set")
def set_profile(
    profile: str,
    tool_names: str | None = typer.Option(None, help=_TOOL_NAMES_HELP),
    description: str | None = typer.Option(None),
    url: str = URL,
    token: str = TOKEN,
) -> None:
    """Change a profile's description or how its agents see names."""
    body = {k: v for k, v in {"tool_names": tool_names, "description": description}.items() if v is not None}
    p = _req("PATCH", f"{url}/v1/profiles/{profile}", token, json=body)
    typer.echo(f"profile {p['name']}: tool_names={p['tool_names']}")


@profiles_app.command("grant")
def grant(
    profile: str,
    tool: str = typer.Argument(..., help="a tool name, or a pattern such as notion__*"),
    read_only: bool = typer.Option(False, "--read-only", help="only tools whose operation is read"),
    reason: str = typer.Option(..., help="why (recorded in the grant.added event)"),
    url: str = URL,
    token: str = TOKEN,
) -> None:
    """Grant TOOL (or a pattern) to PROFILE."""
    g = _req(
        "POST",
        f"{url}/v1/profiles/{profile}/grants",
        token,
        json={"tool": tool, "read_only": read_only, "reason": reason},
    )
    typer.echo(f"granted {g['tool']}{' (read-only)' if g['read_only'] else ''} to {profile}: grant {g['id']}")
    for warning in g.get("warnings") or []:
        typer.echo(f"warning: {warning}", err=True)


@profiles_app.command("revoke")
def revoke(profile: str, grant_id: str, url: str = URL, token: str = TOKEN) -> None:
    """Revoke a grant; every proxy replica stops offering the tools at once."""
    _req("DELETE", f"{url}/v1/profiles/{profile}/grants/{grant_id}", token)
    typer.echo(f"revoked grant {grant_id} of {profile}")


@profiles_app.command("show")
def show_profile(profile: str, as_json: bool = JSON, url: str = URL, token: str = TOKEN) -> None:
    """Show a profile's grants and the tools an agent with it sees."""
    p = _req("GET", f"{url}/v1/profiles/{profile}", token)
    vis = _req("GET", f"{url}/v1/profiles/{profile}/visible", token)
    if as_json:
        return _dump({**p, "visible": vis["tools"]})
    typer.echo(f"{p['name']}: {p['description']} (tool names: {p.get('tool_names', 'namespaced')})")
    for g in p["grants"]:
        ro = " read-only" if g["read_only"] else ""
        typer.echo(f"  grant {g['id']}  {g['tool']}{ro}  by {g['granted_by']}: {g['reason']}")
    typer.echo("visible:")
    for t in vis["tools"]:
        typer.echo(f"  {t['name']}")
