"""`warden audit ...`: tail, search, export, executions, verify — over the audit HTTP API.

warden audit tail --tool 'notion__*' --status error
warden audit search --type 'call.*' --since 2026-11-01T00:00:00Z --limit 200
warden audit verify --since 2026-11-01T00:00:00Z
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any

import httpx
import typer

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True, help="Query, tail and verify the audit log.")

URL = typer.Option("http://127.0.0.1:8084", "--url", envvar="WARDEN_AUDIT_URL", help="audit service base URL")
TOKEN = typer.Option(..., "--token", envvar="WARDEN_ADMIN_TOKEN", help="admin bearer token", show_default=False)
TYPE = typer.Option(None, "--type", help="event type, or a glob: 'call.*'")
TOOL = typer.Option(None, "--tool", help="tool name, or a glob: 'notion__*'")
CONNECTOR = typer.Option(None, "--connector", help="connector name, or a glob")
PROFILE = typer.Option(None, "--profile")
ACTOR = typer.Option(None, "--actor", help="actor id, or kind:id")
STATUS = typer.Option(None, "--status", help="ok, error, denied, ...")
CALL_ID = typer.Option(None, "--call-id")
USER = typer.Option(None, "--user")
Q = typer.Option(None, "--q", help="text in the event's data")
SINCE = typer.Option(None, "--since", help="ISO 8601 time, e.g. 2026-11-23T08:00:00Z")
UNTIL = typer.Option(None, "--until", help="ISO 8601 time")
JSON = typer.Option(False, "--json", help="one JSON object per line")


def _client(url: str, token: str, timeout: float | None = 30.0) -> httpx.Client:
    return httpx.Client(
        base_url=url.rstrip("/"), headers={"authorization": f"Bearer {token}"}, timeout=httpx.Timeout(timeout)
    )


def _params(**kw: Any) -> dict[str, str]:
    return {k: str(v) for k, v in kw.items() if v is not None}


def _fail(r: httpx.Response) -> None:
    if r.status_code >= 400:
        try:
            msg = r.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            msg = r.text[:300]
        typer.echo(f"audit: {r.status_code}: {msg}", err=True)
        raise typer.Exit(1)


def _line(ev: dict[str, Any]) -> str:
    t = datetime.fromisoformat(ev["time"]).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    refs = ev.get("refs") or {}
    actor = ev.get("actor") or {}
    lat = f"{ev['latency_ms']:.0f}ms" if ev.get("latency_ms") is not None else "-"
    return "  ".join(
        [
            t,
            f"{ev['type']:<24}",
            f"{refs.get('tool') or refs.get('connector') or '-':<28}",
            f"{ev.get('status') or '-':<9}",
            f"{lat:>7}",
            f"{actor.get('kind', '-')}:{actor.get('id', '-')}",
            refs.get("call_id") or "",
        ]
    )


def _unreachable(url: str, e: httpx.HTTPError) -> typer.Exit:
    typer.echo(f"audit: cannot reach {url} ({type(e).__name__})", err=True)
    return typer.Exit(1)


@app.command()
def tail(
    type: str | None = TYPE,
    tool: str | None = TOOL,
    connector: str | None = CONNECTOR,
    profile: str | None = PROFILE,
    actor: str | None = ACTOR,
    status: str | None = STATUS,
    call_id: str | None = CALL_ID,
    user: str | None = USER,
    q: str | None = Q,
    since: str | None = typer.Option(None, "--since", help="start from this time (default: now)"),
    as_json: bool = JSON,
    url: str = URL,
    token: str = TOKEN,
) -> None:
    """Follow new events as they are stored (Ctrl-C to stop)."""
    params = _params(type=type, tool=tool, connector=connector, profile=profile, actor=actor, status=status,
                     call_id=call_id, user=user, q=q, since=since)  # fmt: skip
    try:
        with _client(url, token, timeout=None) as c, c.stream("GET", "/v1/tail", params=params) as r:
            if r.status_code >= 400:
                r.read()
                _fail(r)
            event = None
            for raw in r.iter_lines():
                if raw.startswith("event:"):
                    event = raw[6:].strip()
                elif raw.startswith("data:"):
                    doc = json.loads(raw[5:])
                    if event == "missed":
                        typer.echo(f"... {doc['count']} events not shown (this terminal fell behind)", err=True)
                    else:
                        typer.echo(json.dumps(doc) if as_json else _line(doc))
                    event = None
    except KeyboardInterrupt:
        return
    except httpx.HTTPError as e:
        raise _unreachable(url, e) from None


@app.command()
def search(
    type: str | None = TYPE,
    tool: str | None = TOOL,
    connector: str | None = CONNECTOR,
    profile: str | None = PROFILE,
    actor: str | None = ACTOR,
    status: str | None = STATUS,
    call_id: str | None = CALL_ID,
    user: str | None = USER,
    q: str | None = Q,
    since: str | None = SINCE,
    until: str | None = UNTIL,
    limit: int = typer.Option(50, "--limit", min=1, help="at most this many events (newest first)"),
    as_json: bool = JSON,
    url: str = URL,
    token: str = TOKEN,
) -> None:
    """Find stored events, newest first."""
    params = _params(type=type, tool=tool, connector=connector, profile=profile, actor=actor, status=status,
                     call_id=call_id, user=user, q=q, since=since, until=until)  # fmt: skip
    shown = 0
    cursor: str | None = None
    try:
        with _client(url, token) as c:
            while shown < limit:
                page = params | {"limit": str(min(1000, limit - shown))} | ({"cursor": cursor} if cursor else {})
                r = c.get("/v1/events", params=page)
                _fail(r)
                body = r.json()
                for ev in body["items"]:
                    typer.echo(json.dumps(ev) if as_json else _line(ev))
                    shown += 1
                cursor = body.get("next_cursor")
                if not cursor:
                    break
    except httpx.HTTPError as e:
        raise _unreachable(url, e) from None


@app.command()
def export(
    format: str = typer.Option("ndjson", "--format", help="ndjson or csv"),
    type: str | None = TYPE,
    tool: str | None = TOOL,
    connector: str | None = CONNECTOR,
    status: str | None = STATUS,
    since: str | None = SINCE,
    until: str | None = UNTIL,
    url: str = URL,
    token: str = TOKEN,
) -> None:
    """Write every matching event to stdout, oldest first (streamed)."""
    params = _params(format=format, type=type, tool=tool, connector=connector, status=status, since=since, until=until)
    try:
        with _client(url, token, timeout=None) as c, c.stream("GET", "/v1/events/export", params=params) as r:
            if r.status_code >= 400:
                r.read()
                _fail(r)
            for chunk in r.iter_bytes():
                sys.stdout.buffer.write(chunk)
    except httpx.HTTPError as e:
        raise _unreachable(url, e) from None


@app.command()
def executions(
    tool: str | None = TOOL,
    status: str | None = STATUS,
    profile: str | None = PROFILE,
    user: str | None = USER,
    since: str | None = SINCE,
    until: str | None = UNTIL,
    limit: int = typer.Option(50, "--limit", min=1, max=1000),
    as_json: bool = JSON,
    url: str = URL,
    token: str = TOKEN,
) -> None:
    """List tool calls (one line per call), newest first."""
    params = _params(tool=tool, status=status, profile=profile, user=user, since=since, until=until, limit=limit)
    try:
        with _client(url, token) as c:
            r = c.get("/v1/executions", params=params)
            _fail(r)
            for x in r.json()["items"]:
                if as_json:
                    typer.echo(json.dumps(x))
                    continue
                lat = f"{x['latency_ms']:.0f}ms" if x.get("latency_ms") is not None else "-"
                typer.echo(f"{x['started_at'][:23]}  {x['tool'] or '-':<28}  {x['state']:<16}  "
                           f"{x['status'] or '-':<8}  {lat:>7}  {x['call_id']}")  # fmt: skip
    except httpx.HTTPError as e:
        raise _unreachable(url, e) from None


@app.command()
def show(call_id: str, url: str = URL, token: str = TOKEN) -> None:
    """One tool call's full history, as JSON."""
    try:
        with _client(url, token) as c:
            r = c.get(f"/v1/executions/{call_id}")
            _fail(r)
            typer.echo(json.dumps(r.json(), indent=2))
    except httpx.HTTPError as e:
        raise _unreachable(url, e) from None


@app.command()
def verify(
    since: str | None = typer.Option(None, "--since", help="ingest time, inclusive"),
    until: str | None = typer.Option(None, "--until", help="ingest time, exclusive"),
    url: str = URL,
    token: str = TOKEN,
) -> None:
    """Recompute the hash chain; exit 1 and show the first break if it does not hold."""
    try:
        with _client(url, token, timeout=None) as c:
            r = c.post("/v1/verify", params=_params(since=since, until=until))
            _fail(r)
    except httpx.HTTPError as e:
        raise _unreachable(url, e) from None
    rep = r.json()
    if rep["ok"]:
        typer.echo(f"chain ok: {rep['checked']} rows in {len(rep['lanes'])} lanes in {rep['seconds']}s")
        for ln in rep["lanes"]:
            h = ln["head"]
            typer.echo(f"  lane {ln['lane']}: {ln['checked']} rows, head seq {h['seq']} {h['hash'][:16]}…")
        cp = rep.get("checkpoint")
        if cp:
            typer.echo(f"  signed checkpoint: checked {cp.get('checked') or 'none yet'}, written {cp.get('written')}")
        ex = rep.get("executions")
        if ex:
            typer.echo(f"  executions: {ex['checked']} rows match their signatures")
        return
    for ln in rep["lanes"]:
        b = ln["first_break"]
        if b is not None:
            typer.echo(f"chain BROKEN in lane {b['lane']} at seq {b['seq']}"
                       + (f" (event {b['id']})" if b.get("id") else "") + f": {b['reason']}")  # fmt: skip
            typer.echo(f"  checked {ln['checked']} rows of lane {b['lane']} before the break")
    b = rep.get("first_break")
    if b is not None and not any(ln["first_break"] for ln in rep["lanes"]):
        typer.echo(f"chain NOT VERIFIED: {b['reason']}")
    raise typer.Exit(1)
