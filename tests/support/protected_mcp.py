"""A real MCP server (the `mcp` package's MCPServer) protected by OAuth, on a loopback port.

It is a resource server for an authorization server such as `support.oidc`: it publishes RFC 9728
protected resource metadata, answers 401 with `WWW-Authenticate: Bearer ... resource_metadata=...`,
and accepts only RS256 JWT access tokens from that issuer whose `aud` is its own URL (checked with
joserfc against the issuer's JWKS). Tools: `whoami` (the token's `sub`) and `echo`.

Variants for discovery tests: `hint=False` drops `resource_metadata` from the 401;
`prm_at="root"` serves the metadata at the root well-known URI instead of the path-aware one.
Scope step-up: `tool_scopes={"admin_echo": "mcp:admin"}` makes a `tools/call` of that tool with a
valid token lacking the scope answer `403` with `WWW-Authenticate: Bearer error="insufficient_scope",
scope="<every scope it needs>"` (MCP authorization, scope challenge handling).
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import uvicorn
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer

from support.upstream import read_body

__all__ = ["JwksTokenVerifier", "ProtectedMcp", "protected_mcp", "serve_on_loopback"]


class JwksTokenVerifier:
    """TokenVerifier for RFC 9068 JWT access tokens: RS256, issuer, audience, expiry."""

    def __init__(self, issuer: str, audience: str) -> None:
        self.issuer = issuer
        self.audience = audience
        self._keys: KeySet | None = None
        self.seen: list[str] = []  # the `sub` of every accepted token

    async def _keyset(self) -> KeySet:
        if self._keys is None:
            async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
                conf = (await http.get(f"{self.issuer}/.well-known/openid-configuration")).json()
                self._keys = KeySet.import_key_set((await http.get(conf["jwks_uri"])).json())
        return self._keys

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            decoded = jwt.decode(token, await self._keyset(), algorithms=["RS256"])
            jwt.JWTClaimsRegistry(
                iss={"essential": True, "value": self.issuer},
                aud={"essential": True, "value": self.audience},
                exp={"essential": True},
                sub={"essential": True},
            ).validate(decoded.claims)
        except (JoseError, ValueError):
            return None
        claims = decoded.claims
        self.seen.append(str(claims["sub"]))
        return AccessToken(
            token=token,
            client_id=str(claims.get("client_id", "")),
            scopes=str(claims.get("scope", "")).split(),
            expires_at=int(claims["exp"]),
            resource=self.audience,
            subject=str(claims["sub"]),
            claims={"iss": claims["iss"]},
        )


@dataclass
class ProtectedMcp:
    url: str
    issuer: str
    verifier: JwksTokenVerifier
    prm_url: str
    # every HTTP request the server got: (method, path, user agent, carried an Authorization)
    requests: list[tuple[str, str, str, bool]] = field(default_factory=list)


class _Recorder:
    def __init__(self, app: Any, log: list[tuple[str, str, str, bool]]) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope.get("headers", []))
            ua = headers.get(b"user-agent", b"").decode(errors="replace")
            self.log.append((scope["method"], scope["path"], ua, b"authorization" in headers))
        await self.app(scope, receive, send)


def _build(issuer: str, url: str, scopes: list[str], verifier: JwksTokenVerifier) -> Any:
    mcp = MCPServer(
        "warden-test-protected",
        token_verifier=verifier,
        auth=AuthSettings(
            # strings, validated by AuthSettings, keep a path-less issuer exactly as the AS spells it
            issuer_url=issuer,  # type: ignore[arg-type]
            resource_server_url=url,  # type: ignore[arg-type]
            required_scopes=scopes,
            validate_token_resource=False,  # the verifier checks `aud` itself
        ),
    )

    @mcp.tool()
    def whoami() -> str:
        """The subject of the access token this call was made with."""
        tok = get_access_token()
        return tok.subject or "" if tok else ""

    @mcp.tool()
    def echo(text: str) -> str:
        """Echo the text back."""
        return text

    @mcp.tool()
    def admin_echo(text: str) -> str:
        """Echo the text back; may need a further scope (see `tool_scopes`)."""
        return f"admin: {text}"

    return mcp.streamable_http_app()


class _Variants:
    """ASGI wrapper for discovery variants: no hint in the 401, or metadata at the root URI."""

    def __init__(self, app: Any, *, hint: bool, prm_at: str, path_prm: str, prm: dict[str, Any]) -> None:
        self.app = app
        self.hint = hint
        self.prm_at = prm_at
        self.path_prm = path_prm
        self.prm_body = json.dumps(prm).encode()

    async def _send_plain(self, send: Any, status: int, body: bytes, ctype: bytes = b"application/json") -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self.prm_at == "root":
            if scope["path"] == "/.well-known/oauth-protected-resource":
                await self._send_plain(send, 200, self.prm_body)
                return
            if scope["path"] == self.path_prm:
                await self._send_plain(send, 404, b"not found", b"text/plain")
                return
        if scope["type"] != "http" or self.hint:
            await self.app(scope, receive, send)
            return

        async def strip_hint(message: Any) -> None:
            if message["type"] == "http.response.start" and message["status"] == 401:
                message = {
                    **message,
                    "headers": [
                        (k, b'Bearer error="invalid_token"') if k.lower() == b"www-authenticate" else (k, v)
                        for k, v in message["headers"]
                    ],
                }
            await send(message)

        await self.app(scope, receive, strip_hint)


class _ToolScopes:
    """ASGI wrapper: per-tool scopes on top of the server's, answered with a 403 scope challenge."""

    def __init__(
        self, app: Any, *, tool_scopes: dict[str, str], base: list[str], verifier: JwksTokenVerifier, prm_url: str
    ) -> None:
        self.app = app
        self.tool_scopes = tool_scopes
        self.base = base
        self.verifier = verifier
        self.prm_url = prm_url
        self.challenges = 0  # 403s sent

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not self.tool_scopes:
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        need = self._needs(body)
        if need is not None:
            auth = dict(scope["headers"]).get(b"authorization", b"").decode()
            token = auth[7:] if auth.lower().startswith("bearer ") else ""
            held = await self.verifier.verify_token(token) if token else None
            if held is not None and need not in held.scopes:
                self.challenges += 1
                want = " ".join(dict.fromkeys([*self.base, need]))
                www = f'Bearer error="insufficient_scope", scope="{want}", resource_metadata="{self.prm_url}"'
                out = json.dumps({"error": "insufficient_scope"}).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 403,
                        "headers": [(b"content-type", b"application/json"), (b"www-authenticate", www.encode())],
                    }
                )
                await send({"type": "http.response.body", "body": out})
                return
        sent = False

        async def replay() -> Any:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _needs(self, body: bytes) -> str | None:
        try:
            doc = json.loads(body)
        except ValueError:
            return None
        if isinstance(doc, dict) and doc.get("method") == "tools/call":
            name = (doc.get("params") or {}).get("name")
            return self.tool_scopes.get(name) if isinstance(name, str) else None
        return None


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.ready.set()


@asynccontextmanager
async def serve_on_loopback(app: Any, sock: socket.socket, **config: Any) -> AsyncIterator[None]:
    """Run `app` with uvicorn in-process on an already bound socket until the block exits.
    `config` goes to uvicorn.Config (e.g. ssl_certfile / ssl_keyfile)."""
    server = _Server(uvicorn.Config(app, log_level="warning", lifespan="on", **config))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            ready = asyncio.create_task(server.ready.wait())
            await asyncio.wait({ready, task}, return_when=asyncio.FIRST_COMPLETED)
            ready.cancel()
            if task.done():
                task.result()
                raise RuntimeError("uvicorn stopped before it started")
        yield
    finally:
        server.should_exit = True
        async with asyncio.timeout(10):
            await task


@asynccontextmanager
async def protected_mcp(
    issuer: str,
    *,
    scopes: tuple[str, ...] = ("mcp:tools",),
    hint: bool = True,
    prm_at: Literal["path", "root"] = "path",
    tool_scopes: dict[str, str] | None = None,
) -> AsyncIterator[ProtectedMcp]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/mcp"
    verifier = JwksTokenVerifier(issuer, url)
    path_prm = "/.well-known/oauth-protected-resource/mcp"
    prm = {
        "resource": url,
        "authorization_servers": [issuer],
        "scopes_supported": list(scopes),
        "bearer_methods_supported": ["header"],
    }
    app: Any = _Variants(
        _build(issuer, url, list(scopes), verifier), hint=hint, prm_at=prm_at, path_prm=path_prm, prm=prm
    )
    prm_url = f"http://127.0.0.1:{port}" + (path_prm if prm_at == "path" else "/.well-known/oauth-protected-resource")
    if tool_scopes:
        app = _ToolScopes(app, tool_scopes=tool_scopes, base=list(scopes), verifier=verifier, prm_url=prm_url)
    requests: list[tuple[str, str, str, bool]] = []
    try:
        async with serve_on_loopback(_Recorder(app, requests), sock):
            yield ProtectedMcp(url=url, issuer=issuer, verifier=verifier, prm_url=prm_url, requests=requests)
    finally:
        sock.close()
