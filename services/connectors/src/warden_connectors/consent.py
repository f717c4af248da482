"""The consent side of oauth2 connectors, over the `oauth` core: which server, which client,
where to send the person, what to do with the callback, and revocation.

- The discovered server picture is persisted on the connector (`oauth_server`), so every
  replica and every restart refreshes against the same endpoints; `reconnect` discovers again.
- The client is the admin's static one (from the connector's config and sealed secret), or a
  DCR/CIMD registration persisted sealed in `oauth_clients`, obtained under a per-connector
  lock so two replicas never register twice.
- Each consent URL has a row in `oauth_flows` (its state nonce); the callback deletes it
  (`DELETE ... RETURNING`), so a state works once across replicas.
- A person's consent (per-user connection) is bound to the browser that starts it (issue 16,
  10d): the URL given out is Warden's `/connect/start/<nonce>`, which works in one browser only,
  sets a short-lived cookie there (an HMAC of the nonce and the person, keyed by the state key)
  and redirects to the provider; the callback refuses that flow without the cookie. So a link
  completed in someone else's browser links nothing. The organization's consent (the admin's,
  from an admin-token request) keeps the provider's URL as before.

No FastAPI, no NATS: the service and the HTTP edge call this.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import SecretStr
from warden_common.crypto import Sealer

from warden_connectors.oauth import (
    AuthorizationRequest,
    ClientMetadataDocument,
    ClientRegistration,
    DiscoveryCache,
    FlowState,
    GuardedHttp,
    OAuthOverrides,
    OAuthServer,
    RevocationResult,
    StateCodec,
    StateInvalid,
    StateUserMismatch,
    StaticClient,
    TokenSet,
    authorization_url,
    client_credentials,
    exchange_code,
    obtain_client,
    parse_callback,
    revoke,
)
from warden_connectors.store import ConnectorRow, Store

__all__ = ["BINDING_COOKIE_PREFIX", "Consent", "ConsentStart", "DbNonceStore", "Finished", "Opened", "client_aad"]

BINDING_COOKIE_PREFIX = "warden_consent_"
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")

log = logging.getLogger(__name__)

_OVERRIDE_KEYS = (
    "issuer",
    "authorization_endpoint",
    "token_endpoint",
    "registration_endpoint",
    "revocation_endpoint",
    "audience",
    "resource",
    "omit_resource",
)


def client_aad(cid: uuid.UUID, issuer: str) -> str:
    return f"connectors/client/{cid}/{issuer}"


class DbNonceStore:
    """`NonceStore` over `oauth_flows`: a nonce is usable only if its row exists, and only once."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def consume(self, nonce: str, expires_at: float) -> bool:
        return await self.store.consume_flow(nonce) is not None


@dataclass(frozen=True)
class ConsentStart:
    url: str
    expires_at: datetime
    user_key: str


@dataclass(frozen=True)
class Opened:
    """A start URL opened in a browser: where to send it, and the cookie that binds the flow."""

    authorize_url: str
    cookie_name: str
    cookie_value: str
    max_age: int
    connector_id: uuid.UUID
    user_key: str

    def __repr__(self) -> str:
        return f"Opened(connector_id={self.connector_id}, user_key={self.user_key!r})"


@dataclass(frozen=True)
class Finished:
    """A completed callback: for which connector and user, and the tokens (secret)."""

    connector_id: uuid.UUID
    user_key: str
    tokens: TokenSet
    server: OAuthServer
    client: ClientRegistration

    def __repr__(self) -> str:
        return f"Finished(connector_id={self.connector_id}, user_key={self.user_key!r})"


def overrides_of(cfg: Mapping[str, Any]) -> OAuthOverrides:
    kw: dict[str, Any] = {k: cfg[k] for k in _OVERRIDE_KEYS if cfg.get(k) is not None}
    if cfg.get("scopes") is not None:
        kw["scopes"] = tuple(cfg["scopes"])
    return OAuthOverrides(**kw)


class Consent:
    def __init__(
        self,
        store: Store,
        sealer: Sealer,
        http: GuardedHttp,
        codec: StateCodec,
        *,
        redirect_uri: str,
        discovery: DiscoveryCache | None = None,
        client_name: str = "Warden",
        cimd: ClientMetadataDocument | None = None,
    ) -> None:
        self.store = store
        self.sealer = sealer
        self.http = http
        self.codec = codec
        self.redirect_uri = redirect_uri
        self.discovery = discovery or DiscoveryCache(ttl_s=300)
        self.client_name = client_name
        self.cimd = cimd
        # the start URL sits beside the callback: <base>/connect/start/<nonce>
        self.start_base = redirect_uri.removesuffix("/connect/callback").rstrip("/") + "/connect/start/"

    # -- the authorization server -----------------------------------------------------
    async def server(self, row: ConnectorRow, *, fresh: bool = False) -> OAuthServer:
        """The connector's server picture: persisted, or discovered now (and persisted)."""
        if row["oauth_server"] and not fresh:
            return OAuthServer.model_validate(row["oauth_server"])
        if fresh:
            self.discovery.invalidate(row["url"])
        server = await self.discovery.get(self.http, row["url"], overrides_of(row["auth_config"]))
        await self.store.set_oauth_server(row["id"], server.model_dump(mode="json", exclude={"prm", "metadata"}))
        return server

    # -- the client ----------------------------------------------------------------------
    def _static(self, row: ConnectorRow, secret: Mapping[str, Any]) -> StaticClient | None:
        cfg = row["auth_config"]
        if not cfg.get("client_id"):
            return None
        cs = secret.get("client_secret")
        pk = secret.get("private_key")
        return StaticClient(
            client_id=cfg["client_id"],
            client_secret=SecretStr(cs) if cs else None,
            token_endpoint_auth_method=cfg.get("token_endpoint_auth_method") or ("private_key_jwt" if pk else None),
            private_key=SecretStr(pk) if pk else None,
            signing_alg=cfg.get("signing_alg"),
        )

    def _open_client(self, row: ConnectorRow, issuer: str, rec: Any) -> ClientRegistration:
        data = json.loads(self.sealer.open(rec["sealed"], client_aad(row["id"], issuer)))
        return ClientRegistration.model_validate(data)

    async def client(
        self, row: ConnectorRow, server: OAuthServer, secret: Mapping[str, Any], *, create: bool = True
    ) -> ClientRegistration:
        static = self._static(row, secret)
        if static is not None:
            return await obtain_client(self.http, server, redirect_uri=self.redirect_uri, static=static)
        rec = await self.store.get_client(row["id"], server.issuer)
        if rec is not None:
            return self._open_client(row, server.issuer, rec)
        if not create:
            raise StateInvalid("this connector has no OAuth client any more; start the connection again")
        async with self.store.client_lock(row["id"]) as conn:
            rec = await self.store.get_client(row["id"], server.issuer, conn=conn)
            if rec is not None:  # another replica registered while we waited
                return self._open_client(row, server.issuer, rec)
            reg = await obtain_client(
                self.http,
                server,
                redirect_uri=self.redirect_uri,
                cimd=self.cimd,
                allow_dcr=bool(row["auth_config"].get("use_dcr", True)),
                client_name=f"{self.client_name} ({row['name']})",
            )
            plain = reg.model_dump(mode="json")
            for k in ("client_secret", "registration_access_token"):
                v = getattr(reg, k)
                plain[k] = v.get_secret_value() if v is not None else None
            await self.store.put_client(
                row["id"],
                server.issuer,
                client_id=reg.client_id,
                auth_method=reg.token_endpoint_auth_method,
                source=reg.source,
                sealed=self.sealer.seal(json.dumps(plain).encode(), client_aad(row["id"], server.issuer)),
                conn=conn,
            )
            return reg

    # -- start and finish a consent --------------------------------------------------------
    async def start(
        self,
        row: ConnectorRow,
        user_key: str,
        secret: Mapping[str, Any],
        *,
        fresh: bool = False,
        scopes: tuple[str, ...] = (),
    ) -> ConsentStart:
        """A consent URL; `scopes` are asked for on top of the server's (scope step-up)."""
        server = await self.server(row, fresh=fresh)
        client = await self.client(row, server, secret)
        req: AuthorizationRequest = authorization_url(
            server, client, self.codec, connector_id=str(row["id"]), user=user_key, scopes=scopes
        )
        expires = datetime.fromtimestamp(req.flow.expires_at, UTC)
        if not user_key:  # the organization's consent: the admin's own request, as before
            await self.store.add_flow(req.flow.nonce, row["id"], user_key, expires)
            return ConsentStart(url=req.url, expires_at=expires, user_key=user_key)
        await self.store.add_flow(req.flow.nonce, row["id"], user_key, expires, authorize_url=req.url)
        return ConsentStart(url=self.start_base + req.flow.nonce, expires_at=expires, user_key=user_key)

    async def open(self, nonce: str, cookies: Mapping[str, str]) -> Opened:
        """`/connect/start/<nonce>`: the first browser to open it gets the flow's cookie; the same
        browser may open it again (it shows its cookie); any other is refused."""
        if not isinstance(nonce, str) or not _NONCE.fullmatch(nonce):
            raise StateInvalid("the consent link is not valid (damaged); start the connection again")
        rec, first = await self.store.open_flow(nonce)
        if rec is None:
            raise StateInvalid(
                "the consent link is not valid any more (unknown, expired or already used); start the connection again"
            )
        name = BINDING_COOKIE_PREFIX + nonce
        value = self.codec.binding(nonce, rec["user_key"])
        if not first and not self.codec.binding_ok(cookies.get(name), nonce, rec["user_key"]):
            raise StateUserMismatch(
                "this consent link was already opened in another browser: it works only in the browser where "
                "it was first opened. Open it there, or start the connection again from your agent or the console",
                details={"connector_id": str(rec["connector_id"]), "user": rec["user_key"]},
            )
        max_age = max(1, int((rec["expires_at"] - datetime.now(UTC)).total_seconds()))
        return Opened(rec["authorize_url"], name, value, max_age, rec["connector_id"], rec["user_key"])

    def check_browser(self, flow: FlowState, cookies: Mapping[str, str]) -> None:
        """The callback of a person's consent must come to the browser that started it."""
        if not flow.user:
            return
        if not self.codec.binding_ok(cookies.get(BINDING_COOKIE_PREFIX + flow.nonce), flow.nonce, flow.user):
            raise StateUserMismatch(
                "this consent was not started in this browser, so Warden cannot tell that the account you "
                "signed in with belongs to the person it is for: nothing was linked, and this link no longer "
                "works. Start the connection again (from your agent or the console) and open the consent link "
                "in the browser where you started it",
                details={"connector_id": flow.connector_id},
            )

    def peek(self, state: str | None) -> FlowState:
        return self.codec.peek(state)

    async def finish(
        self, row: ConnectorRow, flow: FlowState, params: Mapping[str, str], secret: Mapping[str, Any]
    ) -> Finished:
        """Consume the state (once, across replicas), check the response, redeem the code."""
        server = await self.server(row)
        client = await self.client(row, server, secret, create=False)
        consumed = await self.codec.consume(params.get("state"), user=flow.user, connector_id=str(row["id"]))
        code = parse_callback(params, server, consumed)
        tokens = await exchange_code(self.http, server, client, code, consumed)
        return Finished(row["id"], consumed.user, tokens, server, client)

    # -- client credentials --------------------------------------------------------------
    async def obtain(self, row: ConnectorRow, secret: Mapping[str, Any], *, fresh: bool = False) -> Finished:
        """A token for the client itself (grant client_credentials): no one to send anywhere."""
        server = await self.server(row, fresh=fresh)
        client = await self.client(row, server, secret)
        extra = tuple(row["step_up_scopes"] or ())
        tokens = await client_credentials(
            self.http, server, client, scopes=tuple(dict.fromkeys([*server.scopes, *extra]))
        )
        return Finished(row["id"], "", tokens, server, client)

    # -- revocation --------------------------------------------------------------------
    async def revoke(self, row: ConnectorRow, tokens: TokenSet, secret: Mapping[str, Any]) -> RevocationResult | None:
        """RFC 7009, best effort: refresh token first. None when there is nothing to revoke with."""
        if not row["oauth_server"]:
            return None
        server = OAuthServer.model_validate(row["oauth_server"])
        try:
            client = await self.client(row, server, secret, create=False)
        except StateInvalid:
            return None
        return await revoke(
            self.http, server, client, refresh_token=tokens.refresh_token, access_token=tokens.access_token
        )
