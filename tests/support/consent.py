"""Play the person's browser through a consent: the provider's browserless login
(`login_hint=<user>`), then Warden's `/connect/callback`, and helpers to read what the
connectors service holds (for assertions only)."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import asyncpg
import httpx
from warden_cli.embedded import Stack
from warden_common.bus import Bus
from warden_common.contracts import Service
from warden_common.crypto import Sealer
from warden_common.settings import CryptoSettings, NatsSettings

from support.oauth import follow_consent, registered_clients
from support.oidc import oidc_provider
from support.protected_mcp import ProtectedMcp, protected_mcp

__all__ = [
    "ElicitedConsents",
    "authorize_url",
    "callback_url",
    "complete_consent",
    "connectors_db",
    "hit_callback",
    "jwt_claims",
    "open_start",
    "open_tokens",
    "provider_redirect",
    "stack_bus",
]


def callback_url(stack: Stack) -> str:
    return f"{stack.urls['connectors']}/connect/callback"


def _hinted(consent_url: str, login_hint: str) -> str:
    return f"{consent_url}&{urlencode({'login_hint': login_hint})}"


# The browser's cookie jars: a person's consent URL is Warden's start URL, which binds the flow
# to the browser that opens it (a cookie the callback asks back). One jar per consent URL plays
# "the browser where it was started"; the callback finds it again by the state it carries.
_JARS: dict[str, httpx.Cookies] = {}
_BY_STATE: dict[str, httpx.Cookies] = {}
_AUTHORIZE: dict[str, str] = {}
_OPENING: dict[str, asyncio.Lock] = {}


def is_start_url(consent_url: str) -> bool:
    return "/connect/start/" in urlsplit(consent_url).path


async def open_start(consent_url: str, jar: httpx.Cookies | None = None) -> httpx.Response:
    """Open a start URL in a browser (`jar`: its cookies; by default the consent's own jar)."""
    jar = _JARS.setdefault(consent_url, httpx.Cookies()) if jar is None else jar
    async with httpx.AsyncClient(timeout=30, trust_env=False, cookies=jar) as browser:
        r = await browser.get(consent_url, headers={"Accept": "application/json"})
        jar.update(browser.cookies)
        return r


async def authorize_url(consent_url: str) -> str:
    """The provider's authorization URL behind a consent URL (opening the start URL in the
    consent's own browser; the same URL when it is already the provider's)."""
    if not is_start_url(consent_url):
        return consent_url
    async with _OPENING.setdefault(consent_url, asyncio.Lock()):  # one opening at a time per link
        if consent_url not in _AUTHORIZE:
            r = await open_start(consent_url)
            assert r.status_code == 302, (r.status_code, r.text)
            _AUTHORIZE[consent_url] = r.headers["location"]
    return _AUTHORIZE[consent_url]


async def provider_redirect(stack: Stack, consent_url: str, login_hint: str) -> dict[str, str]:
    """Log in at the provider and stop at its redirect to Warden: the callback's query."""
    url = await authorize_url(consent_url)
    params = await follow_consent(_hinted(url, login_hint), redirect_uri=callback_url(stack))
    if is_start_url(consent_url) and "state" in params:
        _BY_STATE[params["state"]] = _JARS[consent_url]
    return params


async def hit_callback(stack: Stack, params: dict[str, str], jar: httpx.Cookies | None = None) -> httpx.Response:
    """Come back to Warden's callback, in the browser that started the flow unless `jar` says
    which (an empty jar: another person's browser)."""
    cookies = _BY_STATE.get(params.get("state", ""), httpx.Cookies()) if jar is None else jar
    async with httpx.AsyncClient(timeout=30, trust_env=False, cookies=cookies) as browser:
        return await browser.get(
            f"{callback_url(stack)}?{urlencode(params, quote_via=quote)}", headers={"Accept": "application/json"}
        )


async def complete_consent(stack: Stack, consent_url: str, login_hint: str) -> httpx.Response:
    """The whole round trip; returns Warden's status page (JSON)."""
    return await hit_callback(stack, await provider_redirect(stack, consent_url, login_hint))


@asynccontextmanager
async def stack_bus(stack: Stack) -> AsyncIterator[Bus]:
    """A NATS client on the stack's subject root, to ask what the proxy asks."""
    bus = Bus(NatsSettings(url=stack.nats_url, root=stack.cfg.root, request_timeout_s=30), Service.proxy)
    await bus.connect()
    try:
        yield bus
    finally:
        await bus.close()


@asynccontextmanager
async def connectors_db(stack: Stack) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(stack.database_url, server_settings={"search_path": "connectors"})
    try:
        yield conn
    finally:
        await conn.close()


async def open_tokens(stack: Stack, connector: str, user_key: str = "") -> dict[str, Any] | None:
    """The sealed token row opened with the stack's key (a test reading its own vault)."""
    sealer = Sealer(CryptoSettings(keys=stack.crypto_keys).load())  # type: ignore[arg-type]
    async with connectors_db(stack) as db:
        row = await db.fetchrow(
            "SELECT t.connector_id, t.sealed FROM tokens t JOIN connectors c ON c.id = t.connector_id"
            " WHERE c.name = $1 AND t.user_key = $2",
            connector,
            user_key,
        )
    if row is None:
        return None
    doc: dict[str, Any] = json.loads(sealer.open(row["sealed"], f"connectors/token/{row['connector_id']}/{user_key}"))
    return doc


def jwt_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT, unverified (the protected MCP server verifies; tests only read)."""
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))  # type: ignore[no-any-return]


async def gather_bounded(*aws: Any, timeout: float = 60) -> list[Any]:
    async with asyncio.timeout(timeout):
        return list(await asyncio.gather(*aws, return_exceptions=True))


class ElicitedConsents:
    """An MCP client's elicitation callback that plays the person: each consent URL the proxy
    shows is opened in a browser (`complete_consent` as `login_hint`) while the call waits."""

    def __init__(self, stack: Stack, login_hint: str) -> None:
        self.stack = stack
        self.login_hint = login_hint
        self.shown: list[str] = []
        self.pages: list[asyncio.Task[httpx.Response]] = []

    async def __call__(self, ctx: Any, params: Any) -> Any:
        from mcp import types

        url = getattr(params, "url", None)
        assert url, params
        self.shown.append(url)
        self.pages.append(asyncio.create_task(complete_consent(self.stack, url, self.login_hint)))
        return types.ElicitResult(action="accept")


@asynccontextmanager
async def protected_upstream(stack: Stack) -> AsyncIterator[ProtectedMcp]:
    """A real oidc-provider that knows the stack's callback, and an MCP server it protects."""
    async with (
        oidc_provider(clients=registered_clients(callback_url(stack))) as op,
        protected_mcp(op.issuer) as mcp,
    ):
        yield mcp


async def per_user_connector(stack: Stack, admin: Any, upstream: ProtectedMcp, prefix: str) -> str:
    """A per-user OAuth connector to `upstream`, the admin's own connection made (it serves
    tool discovery); its name starts with `prefix`."""
    name = prefix + secrets.token_hex(4)
    view = await admin.req(
        "POST",
        "connectors",
        "/v1/connectors?authorize=true",
        json={"name": name, "url": upstream.url, "scope": "per_user", "auth": {"type": "oauth2"}},
    )
    assert (await complete_consent(stack, view["consent_url"], "the-admin")).status_code == 200
    return name


async def per_user_tool(stack: Stack, admin: Any, upstream: ProtectedMcp, user: str, prefix: str) -> tuple[str, str]:
    """A per-user connector, its `whoami` granted to a profile, and an agent key acting for `user`."""
    name = await per_user_connector(stack, admin, upstream, prefix)
    await admin.register(name, [{"name": "whoami"}])
    profile = await admin.profile([f"{name}__whoami"])
    key = await admin.req("POST", "proxy", "/v1/agent-keys", json={"name": "t", "profile": profile, "user": user})
    return name, str(key["key"])
