"""`warden calls …`: agent keys and approvals, through the proxy's HTTP API."""

from __future__ import annotations

import json
import os
from typing import Any

import httpx
import typer

app = typer.Typer(no_args_is_help=True, help="Agent keys, approvals and tool calls (proxy).")

URL = typer.Option(os.environ.get("WARDEN_PROXY_URL", "http://127.0.0.1:8083"), "--url", help="proxy URL")
TOKEN = typer.Option(os.environ.get("WARDEN_ADMIN_TOKEN", ""), "--token", help="admin token (env WARDEN_ADMIN_TOKEN)")


def _req(method: str, url: str, token: str, **kw: Any) -> Any:
    try:
        r = httpx.request(method, url, headers={"Authorization": f"Bearer {token}"}, timeout=30, **kw)
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
