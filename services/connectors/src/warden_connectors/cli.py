"""`warden connectors ...`: the admin API of the connectors service from a terminal.

Talks HTTP only (`--url`, default $WARDEN_CONNECTORS_URL or http://127.0.0.1:8081; `--token`,
default $WARDEN_ADMIN_TOKEN). `add` and `reconnect` print the consent URL and wait, with a
spinner, until the connection is active or has failed (bounded by `--wait-timeout`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

__all__ = ["app"]

app = typer.Typer(
    no_args_is_help=True, help="Connectors: add, list, show, json, test, disconnect, reconnect, remove, rewrap."
)
out = Console()
err = Console(stderr=True)

_URL = typer.Option("http://127.0.0.1:8081", "--url", envvar="WARDEN_CONNECTORS_URL", help="connectors service")
_TOKEN = typer.Option(..., "--token", envvar="WARDEN_ADMIN_TOKEN", help="admin token", show_default=False)
_WAIT = typer.Option(600.0, "--wait-timeout", help="seconds to wait for the consent (0: do not wait)")


class _Api:
    def __init__(self, url: str, token: str) -> None:
        self.http = httpx.Client(
            base_url=url.rstrip("/"), headers={"Authorization": f"Bearer {token}"}, timeout=60, trust_env=False
        )

    def __call__(self, method: str, path: str, **kw: Any) -> Any:
        try:
            r = self.http.request(method, path, **kw)
        except httpx.HTTPError as e:
            err.print(f"[red]cannot reach {self.http.base_url}: {type(e).__name__}[/red]")
            raise typer.Exit(2) from None
        if r.status_code >= 400:
            try:
                problem = r.json().get("error", {})
                msg = problem.get("message") or r.text
            except ValueError:
                msg = r.text
            err.print(f"[red]{r.status_code}: {msg}[/red]")
            raise typer.Exit(1)
        return r.json() if r.content else None


def _wait_connected(api: _Api, name: str, before: dict[str, Any] | None, timeout: float) -> None:
    """Poll the connector until a consent newer than `before` (the view before the consent URL
    was made; None for a new connector) connected it, or was refused (the service records the
    organization's refused consent, `oauth.last_consent_failure`, when it emits
    `connector.consent_failed`). A status or reason left from before does not end the wait."""
    if timeout <= 0:
        return
    old = (before or {}).get("oauth") or {}
    old_connected = old.get("connected_at")
    old_failure = (old.get("last_consent_failure") or {}).get("at")
    deadline = time.monotonic() + timeout
    with out.status(f"waiting for the consent of {name} (open the URL above) ...", spinner="dots"):
        while time.monotonic() < deadline:
            view = api("GET", f"/v1/connectors/{name}")
            oauth = view.get("oauth") or {}
            connected = oauth.get("connected_at")
            if view["status"] == "active" and connected and connected != old_connected:
                out.print(f"[green]{name} is connected[/green] (scopes: {' '.join(oauth.get('granted_scopes', []))})")
                return
            failure = oauth.get("last_consent_failure") or {}
            if failure.get("at") and failure["at"] != old_failure:
                err.print(f"[red]{name}: the consent was refused: {failure.get('reason') or 'no reason given'}[/red]")
                err.print(f"run `warden connectors reconnect {name}` to try again")
                raise typer.Exit(1)
            time.sleep(1.0)
    err.print(f"[yellow]no consent for {name} within {timeout:g}s; run `warden connectors reconnect {name}`[/yellow]")
    raise typer.Exit(3)


def _split(values: str | None) -> list[str] | None:
    return None if values is None else [v for v in values.replace(",", " ").split() if v]


@app.command()
def add(
    name: str = typer.Option(..., "--name", help="slug; it becomes the tool prefix"),
    mcp_server_url: str = typer.Option(..., "--mcp-server-url", help="the MCP server URL"),
    dcr: bool = typer.Option(True, "--dcr/--no-dcr", help="register a client dynamically (RFC 7591)"),
    client_id: str | None = typer.Option(None, "--client-id"),
    client_secret: str | None = typer.Option(None, "--client-secret", help="or $WARDEN_CLIENT_SECRET"),
    token_auth_method: str | None = typer.Option(
        None, "--token-auth-method", help="client_secret_post | client_secret_basic | private_key_jwt | none"
    ),
    client_credentials: bool = typer.Option(
        False, "--client-credentials", help="machine-to-machine: the client's own token, no consent"
    ),
    private_key_file: Path | None = typer.Option(
        None, "--private-key-file", help="PEM private key for private_key_jwt", exists=True, dir_okay=False
    ),
    signing_alg: str | None = typer.Option(None, "--signing-alg", help="ES256 (default) | ES384 | RS256 | PS256"),
    scopes: str | None = typer.Option(None, "--scopes", help="space or comma separated; replaces discovered"),
    audience: str | None = typer.Option(None, "--audience"),
    resource: str | None = typer.Option(None, "--resource", help="RFC 8707 resource (default: discovered)"),
    issuer: str | None = typer.Option(None, "--issuer"),
    authorization_endpoint: str | None = typer.Option(None, "--authorization-endpoint"),
    token_endpoint: str | None = typer.Option(None, "--token-endpoint"),
    registration_endpoint: str | None = typer.Option(None, "--registration-endpoint"),
    revocation_endpoint: str | None = typer.Option(None, "--revocation-endpoint"),
    per_user: bool = typer.Option(False, "--per-user", help="each user connects their own account"),
    description: str = typer.Option("", "--description"),
    auth_kind: str = typer.Option(
        "oauth2",
        "--auth",
        help="oauth2 (default) | none | bearer | api-key | headers: the static kinds need no consent",
    ),
    api_key_header: str = typer.Option("X-API-Key", "--api-key-header", help="header that carries the API key"),
    header: list[str] = typer.Option(
        [], "--header", help="NAME for --auth headers (repeatable); the values are read as a JSON object, see below"
    ),
    secret_stdin: bool = typer.Option(
        False,
        "--secret-stdin",
        help="read the static secret from stdin (bearer token, API key, or a JSON object of header values); "
        "else $WARDEN_STATIC_SECRET, else a hidden prompt",
    ),
    expires_at: str | None = typer.Option(
        None, "--expires-at", help="when the static credential stops working (ISO 8601 date or time)"
    ),
    wait_timeout: float = _WAIT,
    url: str = _URL,
    token: str = _TOKEN,
) -> None:
    """Add a connector. OAuth (default): print its consent URL and wait until it is connected.
    Static (--auth none | bearer | api-key | headers): store the credential sealed and connect at once."""
    import os

    if auth_kind != "oauth2":
        body = {
            "name": name,
            "url": mcp_server_url,
            "description": description,
            "auth": _static_auth(auth_kind, api_key_header, header, secret_stdin),
        }
        if expires_at is not None:
            body["expires_at"] = _iso(expires_at)
        view = _Api(url, token)("POST", "/v1/connectors", json=body)
        until = f", expires {view['expires_at']}" if view.get("expires_at") else ""
        out.print(f"added [bold]{name}[/bold] ({auth_kind}): {view['status']}{until}")
        return
    auth: dict[str, Any] = {"type": "oauth2", "use_dcr": dcr}
    if client_credentials:
        auth["grant_type"] = "client_credentials"
    if private_key_file is not None:
        auth["private_key"] = private_key_file.read_text()
        auth.setdefault("token_endpoint_auth_method", "private_key_jwt")
    secret = client_secret or os.environ.get("WARDEN_CLIENT_SECRET")
    for key, value in (
        ("signing_alg", signing_alg),
        ("client_id", client_id),
        ("client_secret", secret),
        ("token_endpoint_auth_method", token_auth_method),
        ("scopes", _split(scopes)),
        ("audience", audience),
        ("resource", resource),
        ("issuer", issuer),
        ("authorization_endpoint", authorization_endpoint),
        ("token_endpoint", token_endpoint),
        ("registration_endpoint", registration_endpoint),
        ("revocation_endpoint", revocation_endpoint),
    ):
        if value is not None:
            auth[key] = value
    body = {
        "name": name,
        "url": mcp_server_url,
        "description": description,
        "scope": "per_user" if per_user else "organization",
        "auth": auth,
    }
    api = _Api(url, token)
    view = api("POST", "/v1/connectors?authorize=true", json=body)
    oauth = view.get("oauth") or {}
    out.print(f"added [bold]{name}[/bold]: issuer {oauth.get('issuer')}, client {oauth.get('client_id')}")
    if not view.get("consent_url"):  # client credentials: connected already
        out.print(f"[green]{name} is connected[/green] (client credentials)")
        return
    out.print(f"open this URL to authorize ({_validity(view)}):\n{view['consent_url']}", soft_wrap=True)
    _wait_connected(api, name, None, wait_timeout)


@app.command("list")
def list_(
    status: str = typer.Option("all", "--status", help="active | needs_attention | inactive | all"),
    url: str = _URL,
    token: str = _TOKEN,
) -> None:
    """List connectors."""
    rows = _Api(url, token)("GET", "/v1/connectors", params={"status": status})
    table = Table("name", "status", "auth", "scope", "url")
    for r in rows:
        table.add_row(r["name"], r["status"], r["auth_type"], r["scope"], r["url"])
    out.print(table)


@app.command()
def show(name: str, url: str = _URL, token: str = _TOKEN) -> None:
    """Show a connector: status, discovered endpoints, client, scopes (never a secret)."""
    out.print_json(json.dumps(_Api(url, token)("GET", f"/v1/connectors/{name}")))


@app.command("json")
def as_json(name: str, url: str = _URL, token: str = _TOKEN) -> None:
    """Print the connector as a create body (secrets left out)."""
    out.print_json(json.dumps(_Api(url, token)("GET", f"/v1/connectors/{name}/json")))


@app.command()
def test(name: str, url: str = _URL, token: str = _TOKEN) -> None:
    """List the connector's tools through the proxy with its current credential."""
    result = _Api(url, token)("POST", f"/v1/connectors/{name}/test")
    if result["ok"]:
        out.print(f"[green]ok[/green]: {len(result['tools'])} tools: {', '.join(result['tools'][:20])}")
    else:
        err.print(f"[red]{result['code']}[/red]: {result['message']}")
        raise typer.Exit(1)


_OUTCOME = {
    "revoked": "revoked",
    "not_revocable": "not revoked: the provider cannot revoke this kind of token",
    "failed": "not revoked: the provider's revocation failed",
    "no_endpoint": "not revoked: the provider has no revocation endpoint",
}


def _revocation_lines(report: dict[str, Any] | None) -> list[str]:
    """What the revocation report says, per token, in words (the tokens are purged either way)."""
    if not report or not report.get("connections"):
        return []
    lines = []
    for kind, label in (("refresh", "refresh token"), ("access", "access token")):
        for outcome, count in sorted((report.get(kind) or {}).items()):
            many = f" ({count} connections)" if count > 1 else ""
            lines.append(f"  {label}: {_OUTCOME.get(outcome, outcome)}{many}")
    if not report.get("complete"):
        if until := report.get("access_valid_until"):
            lines.append(f"  the access token stays valid at the provider until {until}")
        elif report.get("access_expiry_unknown"):
            lines.append("  the access token stays valid at the provider until it expires (expiry unknown)")
    return lines


@app.command()
def disconnect(name: str, url: str = _URL, token: str = _TOKEN) -> None:
    """Purge the connector's tokens (revoking them at the provider); every tool fails closed."""
    view = _Api(url, token)("POST", f"/v1/connectors/{name}/disconnect")
    out.print(f"{name}: {view['status']}")
    for line in _revocation_lines(view.get("revocation")):
        out.print(line)


@app.command()
def reconnect(name: str, wait_timeout: float = _WAIT, url: str = _URL, token: str = _TOKEN) -> None:
    """A fresh consent for the same connector; waits until it is connected again."""
    api = _Api(url, token)
    before = api("GET", f"/v1/connectors/{name}")
    started = api("POST", f"/v1/connectors/{name}/reconnect")
    if not started.get("consent_url"):
        out.print(f"[green]{name} is connected[/green] (client credentials)")
        return
    if before["status"] != "active":
        out.print(f"{name} is {before['status']} now; the new consent replaces that")
    out.print(f"open this URL to authorize ({_validity(started)}):\n{started['consent_url']}", soft_wrap=True)
    _wait_connected(api, name, before, wait_timeout)


@app.command()
def remove(
    name: str,
    confirm: str | None = typer.Option(None, "--confirm", help="the connector's name, to skip the prompt"),
    url: str = _URL,
    token: str = _TOKEN,
) -> None:
    """Remove a connector (its tokens are revoked first). Asks you to type its name."""
    typed = confirm if confirm is not None else typer.prompt(f"type {name!r} to remove it")
    if typed != name:
        err.print("[yellow]not removed: the name did not match[/yellow]")
        raise typer.Exit(1)
    answer = _Api(url, token)("DELETE", f"/v1/connectors/{name}") or {}
    out.print(f"removed {name}")
    for line in _revocation_lines(answer.get("revocation")):
        out.print(line)


_STATIC = {"none", "bearer", "api-key", "headers"}


def _static_auth(kind: str, api_key_header: str, names: list[str], from_stdin: bool) -> dict[str, Any]:
    """The create body's `auth` for a static kind; the secret never comes from argv."""
    import os
    import sys

    if kind not in _STATIC:
        raise typer.BadParameter(f"{kind!r}: use oauth2, none, bearer, api-key or headers", param_hint="--auth")
    if kind == "none":
        return {"type": "none"}
    if from_stdin:
        secret = sys.stdin.read().strip()
    else:
        secret = os.environ.get("WARDEN_STATIC_SECRET") or typer.prompt(f"{kind} secret", hide_input=True)
    if not secret:
        raise typer.BadParameter("the secret is empty", param_hint="--secret-stdin / $WARDEN_STATIC_SECRET")
    if kind == "bearer":
        return {"type": "bearer", "token": secret}
    if kind == "api-key":
        return {"type": "api_key", "header": api_key_header, "key": secret}
    try:
        values = json.loads(secret)
    except ValueError:
        raise typer.BadParameter(
            'for --auth headers the secret is a JSON object: {"X-Name": "value", ...}', param_hint="--secret-stdin"
        ) from None
    if not isinstance(values, dict) or not values or not all(isinstance(v, str) for v in values.values()):
        raise typer.BadParameter('a JSON object of header values: {"X-Name": "value"}', param_hint="--secret-stdin")
    missing = [n for n in names if n not in values]
    if missing:
        raise typer.BadParameter(f"no value given for {', '.join(missing)}", param_hint="--header")
    return {"type": "custom_headers", "headers": values}


def _iso(value: str) -> str:
    from datetime import UTC, datetime

    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an ISO 8601 date or time", param_hint="--expires-at") from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).isoformat()


def _validity(answer: dict[str, Any]) -> str:
    expires = answer.get("expires_at") or answer.get("consent_expires_at")
    return f"once, until {expires}" if expires else "once"


def _key_summary(st: dict[str, Any]) -> str:
    counts = ", ".join(f"{k}: {n}" for k, n in sorted(st["by_key"].items())) or "none"
    return f"{st['records']} sealed records (by key id: {counts}); active key {st['active_key']}"


@app.command()
def rewrap(
    batch: int = typer.Option(500, "--batch", min=1, max=5000, help="records per request"),
    status: bool = typer.Option(False, "--status", help="only say how many records still use an old key"),
    url: str = _URL,
    token: str = _TOKEN,
) -> None:
    """Re-wrap every sealed record under the newest key (run after a KEK rotation). Resumable:
    stop it any time and run it again. Exits 1 while records remain under an old key."""
    api = _Api(url, token)
    st = api("GET", "/v1/keys")
    out.print(_key_summary(st))
    if not status:
        total = st["old_key_records"]
        done = 0
        while st["old_key_records"]:
            st = api("POST", "/v1/keys/rewrap", params={"batch": batch})
            done += st["rewrapped"]
            out.print(f"re-wrapped {done}/{total}; {st['old_key_records']} left under an old key")
            if st["rewrapped"] == 0:
                break  # no progress: the rest does not open (reported below)
    if st["unconfigured_key_records"]:
        err.print(
            f"[red]{st['unconfigured_key_records']} records are sealed under keys that are not configured"
            f" ({', '.join(st['unconfigured_keys'])}): they cannot be opened; put those keys back to re-wrap them[/red]"
        )
    if st["old_key_records"]:
        verb = "still use" if status else "could not be re-wrapped and still use"
        err.print(f"[yellow]{st['old_key_records']} records {verb} an old key: keep the old keys configured[/yellow]")
        raise typer.Exit(1)
    if st["unconfigured_key_records"]:
        raise typer.Exit(1)
    old = [k for k in st["configured_keys"] if k != st["active_key"]]
    tail = f"; the old keys ({', '.join(old)}) may now be removed" if old else ""
    out.print(f"[green]every record is under the active key {st['active_key']}{tail}[/green]")


if __name__ == "__main__":
    app()
