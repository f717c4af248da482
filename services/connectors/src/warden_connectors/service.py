"""Connector custody: create, show, change, disconnect, remove, and hand out runtime credentials.

Imports neither FastAPI nor NATS handlers: the bus emits events and asks the proxy (the one
egress) to list a connector's tools for `test`. OAuth connections live in `connections`.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import logging
import uuid
from datetime import datetime
from typing import Any

from warden_common.bus import Bus
from warden_common.contracts import (
    UPSTREAM_LIST_TOOLS,
    Actor,
    Credential,
    EventRefs,
    EventType,
    ListUpstreamTools,
)
from warden_common.crypto import Sealer
from warden_common.errors import WardenError
from warden_common.metrics import CONNECTORS_NEEDING_ATTENTION, OTHER

from warden_connectors.connections import Connections, TokenRevocation, revocation_report
from warden_connectors.consent import Consent, ConsentStart, Opened
from warden_connectors.credentials import CredentialDesk
from warden_connectors.errors import (
    BadInput,
    Conflict,
    ConnectorNotFound,
)
from warden_connectors.models import (
    ConnectorCreate,
    ConnectorUpdate,
    ConnectorView,
    OAuth2Auth,
)
from warden_connectors.specs import check_url, secret_aad, split_auth
from warden_connectors.store import ConnectorRow, Store
from warden_connectors.tokens import TokenVault, is_client_credentials
from warden_connectors.views import as_json, render

__all__ = ["STATUS_GROUPS", "ConnectorService", "check_url"]

log = logging.getLogger(__name__)

_ATTENTION_LABELS = 200  # connectors named in warden_connectors_needing_attention; the rest are `other`

STATUS_GROUPS: dict[str, list[str] | None] = {
    "active": ["active"],
    "needs_attention": ["pending", "reauth_required", "expired", "error"],
    "inactive": ["disconnected"],
    "all": None,
}


class ConnectorService(CredentialDesk):
    """Connectors, their OAuth consent and connections; the proxy's credential requests come
    from `CredentialDesk` (credentials.py)."""

    def __init__(
        self,
        store: Store,
        sealer: Sealer,
        bus: Bus,
        *,
        allow_insecure: bool,
        warning_days: int,
        consent: Consent,
        refresh_skew_s: float = 60.0,
    ) -> None:
        self.store = store
        self.sealer = sealer
        self.bus = bus
        self.allow_insecure = allow_insecure
        self.warning_days = warning_days
        self._cache: dict[tuple[str, str, str], tuple[Credential, datetime | None]] = {}
        self._touched: dict[str, float] = {}  # connector -> when last_used_at was last written
        self._touching: set[asyncio.Task[None]] = set()
        self.connections = Connections(
            store,
            consent,
            TokenVault(store, sealer, consent, skew_s=refresh_skew_s, on_change=self._on_token_change),
            emit=self._emit,
            open_secret=self._open_secret,
            invalidate=self._invalidate,
        )

    async def _on_token_change(self, *a: Any) -> None:
        await self.connections.on_token_change(*a)

    # -- views -------------------------------------------------------------------------
    def view(self, row: ConnectorRow) -> ConnectorView:
        return render(row, self.warning_days)

    async def show(self, row: ConnectorRow) -> ConnectorView:
        view = self.view(row)
        if row["auth_type"] == "oauth2":
            view = view.model_copy(update={"oauth": await self.connections.details(row)})
        return view

    async def _row(self, name: str) -> ConnectorRow:
        row = await self.store.get(name)
        if row is None:
            raise ConnectorNotFound(name)
        return row

    def _emit(
        self,
        type: EventType,
        row: ConnectorRow,
        actor: str | Actor | None,
        *,
        user: str | None = None,
        status: str | None = None,
        **data: Any,
    ) -> None:
        self.bus.emit(
            self.bus.new_event(
                type,
                actor=actor
                if isinstance(actor, Actor)
                else Actor(kind="admin", id=actor)
                if actor
                else Actor(kind="system", id="connectors"),
                refs=EventRefs(connector=row["name"], user=user),
                status=status or row["status"],
                # the stable id: the registry unregisters exactly this connector's tools on removal
                data={"connector_id": str(row["id"]), **data},
            )
        )

    def _invalidate(self, name: str) -> None:
        for key in [k for k in self._cache if k[0] == name]:
            del self._cache[key]

    # -- admin operations -----------------------------------------------------------------
    async def create(self, spec: ConnectorCreate, actor: str) -> ConnectorView:
        check_url(spec.url, allow_insecure=self.allow_insecure)
        if spec.scope == "per_user" and not isinstance(spec.auth, OAuth2Auth):
            raise BadInput("per_user connectors need auth type oauth2 (each user consents for their own tokens)")
        if (
            spec.scope == "per_user"
            and isinstance(spec.auth, OAuth2Auth)
            and spec.auth.grant_type != "authorization_code"
        ):
            raise BadInput("per_user connectors need the authorization_code grant (client credentials have no user)")
        cfg, secret = split_auth(spec.auth)
        status = "pending" if isinstance(spec.auth, OAuth2Auth) else "active"
        row = await self.store.insert(
            name=spec.name,
            url=spec.url,
            transport=spec.transport,
            description=spec.description,
            scope=spec.scope,
            auth_type=spec.auth.type,
            auth_config=cfg,
            secret_sealed_for=lambda cid: self._seal_secret(cid, secret),
            secret_expires_at=spec.expires_at,
            status=status,
            timeout_s=spec.timeout_s,
        )
        if row is None:
            raise Conflict(f"a connector named {spec.name!r} already exists")
        self._emit(EventType.connector_created, row, actor, auth_type=spec.auth.type, url=spec.url)
        return await self.show(row)

    async def add(self, spec: ConnectorCreate, actor: str) -> tuple[ConnectorView, ConsentStart | None]:
        """Create and start the admin's consent at once (`POST /v1/connectors?authorize=true`,
        `warden connectors add`). A refusal on the way (discovery, registration, a client
        credentials token) leaves nothing behind: the connector is removed again (its events
        say so), so the retry after a fix starts clean instead of meeting a 409."""
        view = await self.create(spec, actor)
        if not isinstance(spec.auth, OAuth2Auth):  # static: connected at once, nobody to ask
            return view, None
        try:
            started = await self.authorize(spec.name, actor)
        except Exception as e:  # cleanup, re-raised: whatever stopped the add undoes the create
            row = await self.store.get(spec.name)
            if row is not None and row["id"] == view.id and await self.store.delete(spec.name):
                self._invalidate(spec.name)
                reason = getattr(e, "message", type(e).__name__)[:500]
                self._emit(EventType.connector_removed, row, actor, reason=f"the add failed: {reason}", revocation=None)
            raise
        return await self.get(spec.name), started

    def _seal_secret(self, cid: uuid.UUID, secret: dict[str, Any] | None) -> bytes | None:
        if secret is None:
            return None
        return self.sealer.seal(json.dumps(secret).encode(), secret_aad(cid))

    def _open_secret(self, row: ConnectorRow) -> dict[str, Any]:
        if row["secret_sealed"] is None:
            return {}
        data: dict[str, Any] = json.loads(self.sealer.open(row["secret_sealed"], secret_aad(row["id"])))
        return data

    async def watch_attention(self, every_s: float) -> None:
        """Keep `warden_connectors_needing_attention{connector}` (1 while an admin must act: the
        `needs_attention` group, more scopes needed included) as the store says, every `every_s`.
        Its labels are the connectors needing attention now (the first 200 by name; any more are
        counted under `other`), not the first ones ever seen: a connector set right drops out."""
        shown: set[str] = set()
        while True:
            try:
                rows = await self.store.list(STATUS_GROUPS["needs_attention"], or_step_up=True)
                names = sorted(r["name"] for r in rows)
                now = dict.fromkeys(names[:_ATTENTION_LABELS], 1.0)
                if len(names) > _ATTENTION_LABELS:
                    now[OTHER] = float(len(names) - _ATTENTION_LABELS)
                for name in shown - now.keys():
                    CONNECTORS_NEEDING_ATTENTION.remove(name)
                for name, value in now.items():
                    CONNECTORS_NEEDING_ATTENTION.labels(name).set(value)
                shown = set(now)
            except Exception as e:  # noqa: BLE001 - a failed look (Postgres restarting) is tried again
                log.warning("cannot update the connectors needing attention (%s)", type(e).__name__)
            await asyncio.sleep(every_s)

    async def list(self, group: str) -> list[ConnectorView]:
        if group not in STATUS_GROUPS:
            raise BadInput(f"status group must be one of {', '.join(STATUS_GROUPS)}")
        rows = await self.store.list(STATUS_GROUPS[group], or_step_up=group == "needs_attention")
        return [await self.show(r) for r in rows]

    async def get(self, name: str) -> ConnectorView:
        return await self.show(await self._row(name))

    async def update(self, name: str, patch: ConnectorUpdate, actor: str) -> ConnectorView:
        row = await self._row(name)
        fields: dict[str, Any] = {}
        changed = patch.model_dump(exclude_unset=True)
        if patch.url is not None:
            check_url(patch.url, allow_insecure=self.allow_insecure)
            fields["url"] = patch.url
        if patch.transport is not None:
            fields["transport"] = patch.transport
        if patch.description is not None:
            fields["description"] = patch.description
        if patch.timeout_s is not None:
            fields["timeout_s"] = patch.timeout_s
        if "expires_at" in changed:
            fields["secret_expires_at"] = patch.expires_at
        if patch.auth is not None:
            if row["scope"] == "per_user" and (
                not isinstance(patch.auth, OAuth2Auth) or patch.auth.grant_type != "authorization_code"
            ):
                raise BadInput("per_user connectors need auth type oauth2 with the authorization_code grant")
            cfg, secret = split_auth(patch.auth)
            fields["auth_type"] = patch.auth.type
            fields["auth_config"] = cfg
            fields["secret_sealed"] = self._seal_secret(row["id"], secret)
            fields["status"] = "pending" if isinstance(patch.auth, OAuth2Auth) else "active"
            fields["status_reason"] = None
            if row["auth_type"] == "oauth2":
                await self.connections.disconnect(row, None)  # revoke what the old auth obtained
            else:
                await self.store.purge_tokens(row["id"])
            await self.store.drop_clients(row["id"])
        if "url" in fields or "auth_config" in fields:
            fields["oauth_server"] = None  # discover again on the next consent
        config_changed = bool({"url", "transport", "auth_type", "timeout_s"} & fields.keys())
        new = await self.store.update(name, fields, bump_version=config_changed)
        if new is None:
            raise ConnectorNotFound(name)
        self._invalidate(name)
        self._emit(
            EventType.connector_updated,
            new,
            actor,
            fields=sorted(changed),
            config_changed=config_changed,
            config_version=new["config_version"],
        )
        return await self.show(new)

    async def disconnect(self, name: str, actor: str) -> ConnectorView:
        """Purge every credential (fail closed at once), then revoke OAuth tokens at the provider.
        An oauth2 connector keeps its client settings, so `reconnect` can consent again."""
        row = await self._row(name)
        fields: dict[str, Any] = {"status": "disconnected", "status_reason": "disconnected by an admin"}
        revoked: dict[str, TokenRevocation] = {}
        if row["auth_type"] == "oauth2":
            revoked = await self.connections.disconnect(row, None)
        else:
            await self.store.purge_tokens(row["id"])
            fields["secret_sealed"] = None
        new = await self.store.update(name, fields, bump_version=True)
        if new is None:
            raise ConnectorNotFound(name)
        self._invalidate(name)
        report = revocation_report(revoked)
        self._emit(EventType.connector_disconnected, new, actor, revocation=report)
        if row["status"] != new["status"]:
            self._emit(EventType.connector_status_changed, new, actor, previous=row["status"])
        view = await self.show(new)
        return view.model_copy(update={"revocation": report}) if row["auth_type"] == "oauth2" else view

    async def remove(self, name: str, actor: str) -> dict[str, Any] | None:
        """Revoke (oauth2), then delete. The revocation report, for an oauth2 connector."""
        row = await self._row(name)
        revoked: dict[str, TokenRevocation] = {}
        if row["auth_type"] == "oauth2":
            revoked = await self.connections.disconnect(row, None)  # revoke first, then delete
        else:
            await self.store.purge_tokens(row["id"])
        if not await self.store.delete(name):
            raise ConnectorNotFound(name)
        self._invalidate(name)
        report = revocation_report(revoked)
        self._emit(EventType.connector_removed, row, actor, revocation=report)
        return report if row["auth_type"] == "oauth2" else None

    # -- OAuth consent and connections -------------------------------------------------------
    async def authorize(self, name: str, actor: str, *, fresh: bool = False) -> ConsentStart | None:
        """An organization-wide consent URL (for a per-user connector: the admin's connection).
        A client-credentials connector has no one to ask: its token is obtained now (None)."""
        row = await self._row(name)
        if is_client_credentials(row):
            await self.connections.obtain(row, fresh=fresh)
            return None
        return await self.connections.start(row, "", fresh=fresh)

    async def reconnect(self, name: str, actor: str) -> ConsentStart | None:
        """A fresh consent for the same connector identity: discovery runs again; the tokens
        held now stay until the new consent completes."""
        return await self.authorize(name, actor, fresh=True)

    async def user_consent(self, name: str, user: str) -> ConsentStart:
        row = await self._row(name)
        if row["scope"] != "per_user":
            raise BadInput(f"connector {name!r} is organization-wide; an admin authorizes it for everyone")
        return await self.connections.start(row, user)

    async def user_connection(self, name: str, user: str) -> dict[str, Any]:
        row = await self._row(name)
        if row["scope"] != "per_user":
            raise BadInput(f"connector {name!r} is organization-wide; it has no per-user connections")
        return await self.connections.connection(row, user)

    async def connections_of(self, name: str) -> builtins.list[dict[str, Any]]:
        """Every user's connection to a per-user connector (status, scopes, upstream account;
        never a token)."""
        row = await self._row(name)
        if row["scope"] != "per_user":
            raise BadInput(f"connector {name!r} is organization-wide; it has no per-user connections")
        return [await self.connections.connection(row, u) for u in await self.store.connection_users(row["id"])]

    async def user_disconnect(self, name: str, user: str, actor: str | Actor) -> dict[str, Any]:
        row = await self._row(name)
        if row["scope"] != "per_user":
            raise BadInput(f"connector {name!r} is organization-wide; disconnect the connector instead")
        report = revocation_report(await self.connections.disconnect(row, user))
        self._emit(EventType.connector_disconnected, row, actor, user=user, revocation=report)
        return {**await self.connections.connection(row, user), "revocation": report}

    async def user_connections(self, user: str) -> builtins.list[dict[str, Any]]:
        """The user's connection to every per-user connector that is not disconnected."""
        rows = await self.store.list(None)
        return [
            await self.connections.connection(r, user)
            for r in rows
            if r["scope"] == "per_user" and r["auth_type"] == "oauth2" and r["status"] != "disconnected"
        ]

    async def callback(self, params: dict[str, str], cookies: dict[str, str] | None = None) -> tuple[str, str | None]:
        row, user_key = await self.connections.callback(params, cookies)
        return row["name"], user_key or None

    async def open_consent(self, nonce: str, cookies: dict[str, str]) -> Opened:
        """A person's consent link opened in a browser (`/connect/start/<nonce>`)."""
        return await self.connections.open(nonce, cookies)

    async def test(self, name: str) -> dict[str, Any]:
        """List the connector's tools through the proxy (the one egress), with its credential."""
        row = await self._row(name)
        try:
            page = await self.bus.request(
                UPSTREAM_LIST_TOOLS, ListUpstreamTools(connector=name, page_size=100), timeout=30
            )
        except WardenError as e:
            return {"connector": name, "ok": False, "status": row["status"], "code": str(e.code), "message": e.message}
        return {
            "connector": name,
            "ok": True,
            "status": row["status"],
            "tools": [t.name for t in page.tools],
            "more_tools": bool(page.next_cursor),
        }

    async def as_json(self, name: str) -> dict[str, Any]:
        row = await self._row(name)
        return as_json(row, self._open_secret(row))

    def on_peer_event(self, connector: str | None) -> None:
        """Another replica changed a connector: forget what we cached for it."""
        if connector:
            self._invalidate(connector)
        else:
            self._cache.clear()
