"""Connector custody: create, show, change, disconnect, remove, and hand out runtime credentials.

Imports neither FastAPI nor NATS handlers: the bus is used only to emit events.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from warden_common.bus import Bus
from warden_common.contracts import Actor, Credential, CredentialRequest, EventRefs, EventType
from warden_common.crypto import Sealer
from warden_common.errors import Unauthorized
from warden_common.logging import register_secret

from warden_connectors.errors import (
    BadInput,
    Conflict,
    ConnectorNotFound,
    CredentialExpired,
    Disconnected,
    ReauthRequired,
)
from warden_connectors.models import (
    ApiKeyAuth,
    AuthSpec,
    BearerAuth,
    ConnectorCreate,
    ConnectorUpdate,
    ConnectorView,
    CustomHeadersAuth,
    JwtPassthroughAuth,
    NoAuth,
    OAuth2Auth,
)
from warden_connectors.passthrough import new_keypair, open_passthrough, render_headers
from warden_connectors.store import ConnectorRow, Store

__all__ = ["STATUS_GROUPS", "ConnectorService", "check_url"]

log = logging.getLogger(__name__)

STATUS_GROUPS: dict[str, list[str] | None] = {
    "active": ["active"],
    "needs_attention": ["pending", "reauth_required", "expired", "error"],
    "inactive": ["disconnected"],
    "all": None,
}


def check_url(url: str, *, allow_insecure: bool) -> str:
    """Static policy for a URL an admin gives us. (Fetch-time guards resolve DNS too.)"""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise BadInput("url must be an absolute http(s) URL")
    if parts.username or parts.password:
        raise BadInput("url must not carry credentials; use the auth settings instead")
    if parts.fragment:
        raise BadInput("url must not have a fragment")
    if allow_insecure:
        return url
    if parts.scheme != "https":
        raise BadInput("url must use https (http is allowed only with the dev setting allow_insecure_urls)")
    host = parts.hostname
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if host == "localhost" or host.endswith(".localhost"):
            raise BadInput("url points at this machine; refused by default") from None
        return url
    if not ip.is_global:
        raise BadInput("url points at a private, loopback or link-local address; refused by default")
    return url


def _secret_aad(cid: uuid.UUID) -> str:
    return f"connectors/secret/{cid}"


def _split_auth(auth: AuthSpec) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(non-secret config, secret material or None)."""
    match auth:
        case NoAuth():
            return {}, None
        case BearerAuth(token=t):
            return {}, {"token": t.get_secret_value()}
        case ApiKeyAuth(header=h, key=k):
            return {"header": h}, {"key": k.get_secret_value()}
        case CustomHeadersAuth(headers=hs):
            return {"header_names": sorted(hs)}, {"headers": {k: v.get_secret_value() for k, v in hs.items()}}
        case JwtPassthroughAuth():
            pem, public = new_keypair()
            cfg = {
                "header_names": sorted(auth.headers),
                "site_public_jwk": auth.site_public_jwk,
                "audience": auth.audience,
                "issuer": auth.issuer,
                "warden_public_jwk": public,
            }
            return cfg, {"jwe_private_key": pem, "header_templates": auth.headers}
        case OAuth2Auth():
            cfg = auth.model_dump(exclude={"type", "client_secret", "extra_headers"}, exclude_none=True)
            cfg["extra_header_names"] = sorted(auth.extra_headers)
            secret: dict[str, Any] = {}
            if auth.client_secret is not None:
                secret["client_secret"] = auth.client_secret.get_secret_value()
            if auth.extra_headers:
                secret["headers"] = {k: v.get_secret_value() for k, v in auth.extra_headers.items()}
            return cfg, secret or None
    raise BadInput("unknown auth type")


class ConnectorService:
    def __init__(self, store: Store, sealer: Sealer, bus: Bus, *, allow_insecure: bool, warning_days: int) -> None:
        self.store = store
        self.sealer = sealer
        self.bus = bus
        self.allow_insecure = allow_insecure
        self.warning_days = warning_days
        self._cache: dict[tuple[str, str], Credential] = {}

    # -- views -------------------------------------------------------------------------
    def view(self, row: ConnectorRow) -> ConnectorView:
        warnings: list[str] = []
        exp = row["secret_expires_at"]
        if exp is not None:
            now = datetime.now(UTC)
            if exp <= now:
                warnings.append(f"the credential expired on {exp.date().isoformat()}")
            elif exp - now <= timedelta(days=self.warning_days):
                warnings.append(f"the credential expires on {exp.date().isoformat()}")
        return ConnectorView(
            id=row["id"],
            name=row["name"],
            url=row["url"],
            transport=row["transport"],
            description=row["description"],
            scope=row["scope"],
            auth_type=row["auth_type"],
            auth_config=dict(row["auth_config"]),
            secret_stored=row["secret_sealed"] is not None,
            status=row["status"],
            status_reason=row["status_reason"],
            warnings=warnings,
            config_version=row["config_version"],
            expires_at=exp,
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            last_used_at=row["last_used_at"],
        )

    async def _row(self, name: str) -> ConnectorRow:
        row = await self.store.get(name)
        if row is None:
            raise ConnectorNotFound(name)
        return row

    def _emit(self, type: EventType, row: ConnectorRow, actor: str | None, **data: Any) -> None:
        self.bus.emit(
            self.bus.new_event(
                type,
                actor=Actor(kind="admin", id=actor) if actor else Actor(kind="system", id="connectors"),
                refs=EventRefs(connector=row["name"]),
                status=row["status"],
                data=data,
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
        cfg, secret = _split_auth(spec.auth)
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
        return self.view(row)

    def _seal_secret(self, cid: uuid.UUID, secret: dict[str, Any] | None) -> bytes | None:
        if secret is None:
            return None
        return self.sealer.seal(json.dumps(secret).encode(), _secret_aad(cid))

    def _open_secret(self, row: ConnectorRow) -> dict[str, Any]:
        if row["secret_sealed"] is None:
            return {}
        data: dict[str, Any] = json.loads(self.sealer.open(row["secret_sealed"], _secret_aad(row["id"])))
        return data

    async def list(self, group: str) -> list[ConnectorView]:
        if group not in STATUS_GROUPS:
            raise BadInput(f"status group must be one of {', '.join(STATUS_GROUPS)}")
        return [self.view(r) for r in await self.store.list(STATUS_GROUPS[group])]

    async def get(self, name: str) -> ConnectorView:
        return self.view(await self._row(name))

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
            if row["scope"] == "per_user" and not isinstance(patch.auth, OAuth2Auth):
                raise BadInput("per_user connectors need auth type oauth2")
            cfg, secret = _split_auth(patch.auth)
            fields["auth_type"] = patch.auth.type
            fields["auth_config"] = cfg
            fields["secret_sealed"] = self._seal_secret(row["id"], secret)
            fields["status"] = "pending" if isinstance(patch.auth, OAuth2Auth) else "active"
            fields["status_reason"] = None
            await self.store.purge_tokens(row["id"])
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
        return self.view(new)

    async def disconnect(self, name: str, actor: str) -> ConnectorView:
        row = await self._row(name)
        await self.store.purge_tokens(row["id"])
        new = await self.store.update(
            name,
            {"status": "disconnected", "status_reason": "disconnected by an admin", "secret_sealed": None},
            bump_version=True,
        )
        assert new is not None
        self._invalidate(name)
        self._emit(EventType.connector_disconnected, new, actor)
        return self.view(new)

    async def remove(self, name: str, actor: str) -> None:
        row = await self._row(name)
        await self.store.purge_tokens(row["id"])
        if not await self.store.delete(name):
            raise ConnectorNotFound(name)
        self._invalidate(name)
        self._emit(EventType.connector_removed, row, actor)

    # -- the proxy's credential request ---------------------------------------------------
    async def credential(self, req: CredentialRequest) -> Credential:
        key = (req.connector, req.user or "")
        if req.jwe is None and not req.force_refresh and (hit := self._cache.get(key)) is not None:
            if hit.expires_at is None or hit.expires_at > datetime.now(UTC) + timedelta(seconds=30):
                return hit
        row = await self._row(req.connector)
        status = row["status"]
        if status == "disconnected":
            raise Disconnected(f"connector {req.connector!r} is disconnected; an admin must reconnect it")
        if status == "reauth_required":
            raise ReauthRequired(f"connector {req.connector!r} needs to be authorized again")
        exp = row["secret_expires_at"]
        if exp is not None and exp <= datetime.now(UTC):
            raise CredentialExpired(f"the credential of connector {req.connector!r} expired; an admin must replace it")
        if row["auth_type"] == "jwt_passthrough":
            headers, exp = self._passthrough_headers(row, req.jwe)
        else:
            headers = self._static_headers(row)
        for v in headers.values():
            register_secret(v.split(" ", 1)[-1])
        cred = Credential(
            connector=row["name"],
            url=row["url"],
            transport=row["transport"],
            headers=headers,
            expires_at=exp,
            config_version=row["config_version"],
            timeout_s=row["timeout_s"],
        )
        if row["auth_type"] != "jwt_passthrough":
            self._cache[key] = cred
        return cred

    def _passthrough_headers(self, row: ConnectorRow, token: str | None) -> tuple[dict[str, str], datetime | None]:
        if not token:
            raise Unauthorized(
                f"connector {row['name']!r} needs the embedding site's token: send it in the X-Warden-JWE header"
            )
        cfg = row["auth_config"]
        secret = self._open_secret(row)
        jwt_token, claims = open_passthrough(
            token,
            private_pem=secret["jwe_private_key"],
            site_jwk=cfg["site_public_jwk"],
            audience=cfg["audience"],
            issuer=cfg.get("issuer"),
        )
        register_secret(jwt_token)
        exp = datetime.fromtimestamp(int(claims["exp"]), UTC)
        return render_headers(secret["header_templates"], jwt_token), exp

    def _static_headers(self, row: ConnectorRow) -> dict[str, str]:
        secret = self._open_secret(row)
        cfg = row["auth_config"]
        match row["auth_type"]:
            case "none":
                return {}
            case "bearer":
                return {"Authorization": f"Bearer {secret['token']}"}
            case "api_key":
                return {str(cfg.get("header", "X-API-Key")): secret["key"]}
            case "custom_headers":
                return dict(secret.get("headers", {}))
        raise ReauthRequired(f"connector {row['name']!r} has no usable credential yet")

    def on_peer_event(self, connector: str | None) -> None:
        """Another replica changed a connector: forget what we cached for it."""
        if connector:
            self._invalidate(connector)
        else:
            self._cache.clear()
