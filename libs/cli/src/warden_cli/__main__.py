"""The `warden` command: `warden run`, plus the admin commands of each service."""

from __future__ import annotations

import importlib
from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True, help="Warden: an MCP connector gateway.")


@app.callback()
def _root() -> None:
    """Warden: an MCP connector gateway."""


@app.command()
def run(
    data_dir: Path = typer.Option(Path(".warden"), help="where the embedded run keeps its data and logs"),
    base_port: int = typer.Option(8080, help="the console listens on base, the services on base+1..base+4"),
    nats_port: int = typer.Option(4250, help="port of the embedded NATS server"),
    demo_port: int = typer.Option(8090, help="port of the demo MCP server"),
    log_level: str = typer.Option("info"),
    strict: bool = typer.Option(
        False,
        "--strict",
        help="production guards: upstreams and OAuth servers only over https at public addresses (no demo server)",
    ),
) -> None:
    """Run Warden on this machine: NATS, Postgres, the four services and a demo MCP server.
    Without --strict upstreams may also be on loopback over http (never link-local, private or
    metadata addresses)."""
    from warden_cli.run import run as _run

    raise typer.Exit(
        _run(
            data_dir=data_dir,
            base_port=base_port,
            nats_port=nats_port,
            demo_port=demo_port,
            log_level=log_level,
            strict=strict,
        )
    )


@app.command("nats-config")
def nats_config(
    root: str = typer.Option("warden", help="subject root the services run with"),
    internal: list[str] = typer.Option(
        [], "--internal", help="an internal service as USER=PROFILE: it may call that profile's tools (repeatable)"
    ),
) -> None:
    """Print the nats-server config for a deployment: one user per service and per internal
    service with its subject permissions and own reply inbox; passwords are read by the server
    from $NATS_<USER> environment variables (a Secret). deploy/base/nats.conf carries its output."""
    from warden_cli.natsconf import deploy_nats_config

    pairs: dict[str, str] = {}
    for item in internal:
        user, sep, profile = item.partition("=")
        if not sep or not user or not profile:
            raise typer.BadParameter(f"{item!r}: write USER=PROFILE", param_hint="--internal")
        pairs[user] = profile
    try:
        typer.echo(deploy_nats_config(root=root, internal=pairs), nl=False)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None


@app.command("asyncapi")
def asyncapi(
    out: Path = typer.Option(Path("docs/asyncapi.json"), "--out", "-o", help="where to write it; - for stdout"),
    root: str = typer.Option("warden", help="subject root the services run with"),
) -> None:
    """Write the AsyncAPI 3.0 document of Warden's NATS subjects and messages, generated from
    warden_common.contracts (docs/asyncapi.json carries it; a test fails when it is stale)."""
    from warden_common.asyncapi import render

    text = render(root)
    if str(out) == "-":
        typer.echo(text, nl=False)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {out}")


# Each service ships its own admin commands; mount the ones that are installed.
for module, attr, name in (
    ("warden_connectors.cli", "app", "connectors"),
    ("warden_registry.cli", "tools_app", "tools"),
    ("warden_registry.cli", "profiles_app", "profiles"),
    ("warden_audit.cli", "app", "audit"),
    ("warden_proxy.cli", "app", "calls"),
):
    try:
        sub = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        continue
    app.add_typer(sub, name=name)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
