"""`warden calls …`: agent keys and approvals, through the proxy's HTTP API."""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import quote

import httpx
import typer

app = typer.Typer(no_args_is_help=True, help="Agent keys, approvals and tool calls (proxy).")

URL = typer.Option(os.environ.get("WARDEN_PROXY_URL", "http://127.0.0.1:8083"), "--url", help="proxy URL")
TOKEN = typer.Option(os.environ.get("WARDEN_ADMIN_TOKEN", ""), "--token", help="admin token (env WARDEN_ADMIN_TOKEN)")


def _req(method: str, url: str, token: str, timeout: float = 30, **kw: Any) -> Any:
    try:
        r = httpx.request(method, url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout, **kw)
    except httpx.HTTPError as e:
        raise typer.BadParameter(f"cannot reach the proxy at {url}: {type(e).__name__}") from None
    if r.status_code >= 400:
        try:
            msg = r.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            msg = r.text[:300]
        typer.echo(f"error ({r.status_code}): {msg}", err=True)
        raise typer.Exit(1)
    return r.json() if r.content else None


@app.command("key-create")
def key_create(name: str, profile: str, user: str = typer.Option(None), url: str = URL, token: str = TOKEN) -> None:
    """Create an agent API key bound to PROFILE (the key is printed once)."""
    body = {"name": name, "profile": profile, **({"user": user} if user else {})}
    out = _req("POST", f"{url}/v1/agent-keys", token, json=body)
    typer.echo(f"prefix {out['prefix']}  profile {out['profile']}\n{out['key']}\n(store it now: it is not shown again)")


@app.command("keys")
def keys(url: str = URL, token: str = TOKEN) -> None:
    """List agent keys (prefixes only), with the user each key acts for (`-`: nobody)."""
    for k in _req("GET", f"{url}/v1/agent-keys", token):
        state = "revoked" if k["revoked_at"] else "active"
        user = k.get("user") or "-"
        typer.echo(f"{k['prefix']}  {k['profile']:<20} {state:<8} user {user:<24} {k['name']}")


@app.command("key-revoke")
def key_revoke(prefix: str, url: str = URL, token: str = TOKEN) -> None:
    """Revoke an agent key; every proxy replica refuses it at once."""
    _req("DELETE", f"{url}/v1/agent-keys/{prefix}", token)
    typer.echo(f"revoked {prefix}")


@app.command("approvals")
def approvals(status: str = "pending", url: str = URL, token: str = TOKEN) -> None:
    """List held calls."""
    for a in _req("GET", f"{url}/v1/approvals", token, params={"status": status}):
        typer.echo(f"{a['id']}  {a['tool']:<30} {a['profile']:<16} {a['actor']:<24} {json.dumps(a['arguments'])[:60]}")


@app.command("approve")
def approve(approval_id: str, reason: str = "", url: str = URL, token: str = TOKEN) -> None:
    """Approve a held call."""
    a = _req("POST", f"{url}/v1/approvals/{approval_id}/approve", token, json={"reason": reason})
    typer.echo(f"approved {a['tool']} ({a['id']})")


@app.command("reject")
def reject(approval_id: str, reason: str = typer.Option(..., prompt=True), url: str = URL, token: str = TOKEN) -> None:
    """Reject a held call with a reason the caller sees."""
    a = _req("POST", f"{url}/v1/approvals/{approval_id}/reject", token, json={"reason": reason})
    typer.echo(f"rejected {a['tool']} ({a['id']})")


@app.command("run")
def run(
    tool: str,
    profile: str = typer.Option(..., "--profile", help="the profile whose grants apply"),
    user: str = typer.Option(None, "--user", help="the end user acted for (per-user connectors)"),
    args: str = typer.Option("{}", "--args", help="the arguments, a JSON object"),
    timeout: float = typer.Option(600, "--timeout", help="seconds to wait (a held call waits for its approval)"),
    url: str = URL,
    token: str = TOKEN,
) -> None:
    """Run TOOL as PROFILE (and USER) with the admin token: the profile's grants and the
    approvals apply as for its agents; the audit records you as the actor."""
    try:
        arguments = json.loads(args)
    except ValueError as e:
        raise typer.BadParameter(f"not JSON: {e}", param_hint="--args") from None
    if not isinstance(arguments, dict):
        raise typer.BadParameter('a JSON object, such as {"id": "42"}', param_hint="--args")
    body = {"profile": profile, "arguments": arguments, **({"user": user} if user else {})}
    r = _req("POST", f"{url}/v1/admin/tools/{quote(tool, safe='')}/call", token, timeout=timeout, json=body)
    blocks = r.get("content") or []
    for block in blocks:
        typer.echo(block["text"] if block.get("type") == "text" else json.dumps(block))
    if not blocks and r.get("structured_content") is not None:
        typer.echo(json.dumps(r["structured_content"], indent=2))
    if r.get("is_error"):
        typer.echo(f"the tool answered an error (call {r.get('call_id')})", err=True)
        raise typer.Exit(1)
