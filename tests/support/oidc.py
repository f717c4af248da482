"""A real OAuth 2.1 / OIDC authorization server (npm `oidc-provider`) for tests.

`tests/peers/oidc-provider/server.js` on a free loopback port, one process per context:
DCR, PKCE, refresh rotation, revocation, introspection, RFC 8707 JWT access tokens, RFC 9207
`iss`, a browserless login/consent (`login_hint=<user>`, `login_hint=deny`), pre-registered
clients from `clients=...`, and `GET /test/stats` (token-endpoint requests per grant type).
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

__all__ = ["INTROSPECTOR", "OidcProvider", "ensure_installed", "oidc_provider"]

PEER_DIR = Path(__file__).resolve().parents[1] / "peers" / "oidc-provider"
INTROSPECTOR = ("test-introspector", "test-introspector-secret")


def ensure_installed() -> None:
    """`npm ci` once, if node_modules is missing (locked, so concurrent runs install once)."""
    if (PEER_DIR / "node_modules" / "oidc-provider").is_dir():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is needed to run the oidc-provider test peer")
    with open(Path(tempfile.gettempdir()) / "warden-oidc-provider-npm.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (PEER_DIR / "node_modules" / "oidc-provider").is_dir():
            subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--silent"], cwd=PEER_DIR, check=True, timeout=300)


@dataclass
class OidcProvider:
    issuer: str
    process: asyncio.subprocess.Process
    clients: list[dict[str, Any]] = field(default_factory=list)

    async def introspect(
        self, token: str, client_id: str | None = None, client_secret: str | None = None
    ) -> dict[str, Any]:
        """RFC 7662 introspection; by default as the built-in confidential introspector client."""
        if client_id is None:
            client_id, client_secret = INTROSPECTOR
        data = {"token": token}
        if client_secret is None:
            data["client_id"] = client_id
        async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
            url = f"{self.issuer}/token/introspection"
            if client_secret is None:
                r = await http.post(url, data=data)
            else:
                r = await http.post(url, data=data, auth=httpx.BasicAuth(client_id, client_secret))
            r.raise_for_status()
            return r.json()

    async def stats(self) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
            r = await http.get(f"{self.issuer}/test/stats")
            r.raise_for_status()
            return r.json()

    async def refresh_requests(self, client_id: str | None = None) -> int:
        s = await self.stats()
        counts = s["by_client"].get(client_id, {}) if client_id else s["token_requests"]
        return int(counts.get("refresh_token", 0))


@asynccontextmanager
async def oidc_provider(
    at_ttl: int = 3600,
    rt_ttl: int = 86400,
    clients: list[dict[str, Any]] | None = None,
    env: dict[str, str] | None = None,
) -> AsyncIterator[OidcProvider]:
    """`clients`: pre-registered clients (oidc-provider metadata); `env`: extra variables for
    server.js, e.g. {"CIMD": "1", "NODE_EXTRA_CA_CERTS": cert_path}."""
    await asyncio.to_thread(ensure_installed)
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is needed to run the oidc-provider test peer")
    proc_env = {
        **os.environ,
        **(env or {}),
        "AT_TTL": str(at_ttl),
        "RT_TTL": str(rt_ttl),
        "CLIENTS": json.dumps(clients or []),
        "NODE_NO_WARNINGS": "1",
    }
    with tempfile.TemporaryFile() as errlog:
        proc = await asyncio.create_subprocess_exec(
            node, "server.js", "0", cwd=PEER_DIR, env=proc_env, stdout=asyncio.subprocess.PIPE, stderr=errlog
        )
        try:
            assert proc.stdout is not None
            async with asyncio.timeout(20):
                while True:
                    line = await proc.stdout.readline()
                    if not line:
                        errlog.seek(0)
                        raise RuntimeError(f"oidc-provider exited: {errlog.read().decode(errors='replace')[-2000:]}")
                    text = line.decode().strip()
                    if text.startswith("READY "):
                        issuer = text.split(" ", 1)[1]
                        break
            yield OidcProvider(issuer=issuer, process=proc, clients=list(clients or []))
        finally:
            if proc.returncode is None:
                proc.terminate()
                try:
                    async with asyncio.timeout(5):
                        await proc.wait()
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
