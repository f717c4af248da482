"""An internal service installs `warden-client` without the server's dependencies (issue 14):
a fresh venv gets libs/common and libs/client from this checkout (`pip install`, configured
as for `make install`), holds none of FastAPI, Starlette, uvicorn, asyncpg, the Prometheus
client, httpx or cryptography, and its own python calls a granted tool through the running
stack with `WardenClient` (and gets the typed `Forbidden` for one the profile lacks).

It prints what the venv holds (packages, MB); `python -m bench.client_install` compares that
with the full set the services install (`warden-common[server]`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.admin import admin_client
from support.upstream import trouble_upstream
from support.venvs import copy_package, footprint, fresh_venv, pip_install, run
from warden_cli.embedded import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# the server's dependencies (warden-common[server]); none may come with the client
SERVER_ONLY = {
    "fastapi",
    "starlette",
    "uvicorn",
    "asyncpg",
    "prometheus-client",
    "httpx",
    "httpcore",
    "pydantic-settings",
    "cryptography",
    "swagger-ui-bundle",
}

# what an internal service runs: one granted call, one the profile does not grant
SCRIPT = """
import asyncio, json, sys

from warden_client import WardenClient
from warden_common.errors import Forbidden

async def main() -> None:
    url, root, profile, granted, ungranted = sys.argv[1:]
    async with WardenClient(nats_url=url, profile=profile, root=root, user="billing-svc", timeout_s=60) as warden:
        result = await warden.call(granted, {"key": "from-the-client-venv"})
        try:
            await warden.call(ungranted, {"reason": "never runs"})
            refused = None
        except Forbidden as e:
            refused = e.code
    # what this process imported: none of the server's packages (they are not even installed)
    mods = sorted({m.split(".")[0] for m in sys.modules})
    print(json.dumps({"is_error": result.is_error, "content": result.content, "refused": refused, "modules": mods}))

asyncio.run(main())
"""


async def test_the_client_installs_without_the_server_and_calls_a_granted_tool(
    stack: Stack, nats_url: str, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    common, client = copy_package("common", src), copy_package("client", src)
    python = await fresh_venv(tmp_path / "venv")
    seeded = await footprint(python)
    await pip_install(python, common, client)
    got = await footprint(python)

    added = sorted(set(got.packages) - set(seeded.packages))
    assert {"warden-client", "warden-common", "nats-py", "pydantic"} <= set(added), added
    assert not SERVER_ONLY & set(got.packages), sorted(SERVER_ONLY & set(got.packages))
    print(
        f"\nwarden-client venv: {len(added)} packages, {(got.site_bytes - seeded.site_bytes) / 2**20:.1f} MB "
        f"added to a fresh venv ({len(got.packages)} packages, {got.mb:.1f} MB site-packages with pip and "
        f"setuptools): {', '.join(added)}"
    )

    async with trouble_upstream() as up, admin_client(stack) as admin:
        c = await admin.connector(up.url, up.token)
        await admin.register(c)
        p = await admin.profile([f"{c}__record"])
        script = tmp_path / "call.py"
        script.write_text(SCRIPT)
        # run from tmp_path: the checkout's sources are not on its path, only the venv's
        out = await run(python, script, nats_url, stack.cfg.root, p, f"{c}__record", f"{c}__fail", cwd=tmp_path)
        res = json.loads(out.strip().splitlines()[-1])
        assert res["is_error"] is False and res["content"][0]["text"] == "from-the-client-venv:1", res
        assert res["refused"] == "forbidden", res
        assert up.trouble.executions.get("from-the-client-venv") == 1
        imported = set(res["modules"])
        assert {"warden_client", "warden_common", "nats"} <= imported
        assert not {m.replace("-", "_") for m in SERVER_ONLY} & imported
