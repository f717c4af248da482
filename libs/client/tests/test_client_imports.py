"""Importing `warden_client`, and the contracts and errors a caller uses with it, touches none
of the server's packages, even where they are installed (as here, in the dev venv): the base
install of warden-common (pydantic, nats-py, orjson) is all it needs. The install itself, in a
venv without them, is tests/e2e/test_client_install.py."""

from __future__ import annotations

import json
import subprocess
import sys

# warden-common[server]'s packages, and OpenTelemetry (its `otel` extra)
SERVER_ONLY = {
    "fastapi",
    "starlette",
    "uvicorn",
    "asyncpg",
    "prometheus_client",
    "httpx",
    "httpcore",
    "anyio",
    "pydantic_settings",
    "cryptography",
    "swagger_ui_bundle",
    "opentelemetry",
}


def _imported(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport json, sys; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return {m.split(".")[0] for m in json.loads(out.strip().splitlines()[-1])}


def test_importing_the_client_imports_no_server_package() -> None:
    got = _imported(
        "from warden_client import WardenClient\n"
        "from warden_common.contracts import ToolCallResult, DurableResult\n"
        "from warden_common.errors import Forbidden, RemoteError"
    )
    assert {"warden_client", "warden_common", "nats", "pydantic"} <= got
    assert not SERVER_ONLY & got, sorted(SERVER_ONLY & got)


def test_the_services_bus_still_imports_its_server_packages() -> None:
    """The check above can fail: the services' bus, in the same venv, does pull them in."""
    got = _imported("from warden_common.bus import Bus")
    assert {"prometheus_client"} <= got
