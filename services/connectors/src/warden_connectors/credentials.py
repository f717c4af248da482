"""The proxy's credential request, answered by the connectors service: the headers to inject
(from the cache, a static secret, a jwt_passthrough token, or the OAuth vault) or a typed
refusal; scope step-up; last-use bookkeeping. A mixin of `ConnectorService` (service.py).

Only the proxy may publish the request (NATS permissions); the headers it answers are the one
place a credential leaves this service.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn

from warden_common.contracts import Credential, CredentialRequest
from warden_common.errors import Unauthorized
from warden_common.logging import register_secret

from warden_connectors.connections import Connections
from warden_connectors.errors import CredentialExpired, Disconnected, Forbidden, ReauthRequired
from warden_connectors.passthrough import open_passthrough, render_headers
from warden_connectors.store import ConnectorRow, Store

__all__ = ["CredentialDesk"]

log = logging.getLogger(__name__)


class CredentialDesk:
    store: Store
    connections: Connections
    _cache: dict[tuple[str, str, str], tuple[Credential, datetime | None]]
    _touched: dict[str, float]
    _touching: set[asyncio.Task[None]]

    if TYPE_CHECKING:  # provided by ConnectorService

        async def _row(self, name: str) -> ConnectorRow: ...

        def _open_secret(self, row: ConnectorRow) -> dict[str, Any]: ...

    # -- the proxy's credential request ---------------------------------------------------
    def _used(self, name: str) -> None:
        """Record `last_used_at`, at most once a minute per connector and off the hot path."""
        now = time.monotonic()
        if now - self._touched.get(name, -1e9) < 60:
            return
        self._touched[name] = now
        task = asyncio.create_task(self.store.touch_by_name(name))
        self._touching.add(task)
        task.add_done_callback(self._touched_done)

    def _touched_done(self, task: asyncio.Task[None]) -> None:
        self._touching.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("recording last use failed: %s", type(task.exception()).__name__)

    async def credential(self, req: CredentialRequest) -> Credential:
        if req.step_up_scopes:
            await self._step_up(req)
        if req.purpose == "call":
            self._used(req.connector)
        key = (req.connector, req.user or "", req.purpose)
        now = datetime.now(UTC)
        if req.jwe is None and not req.force_refresh and (hit := self._cache.get(key)) is not None:
            cred, fresh_until = hit
            if fresh_until is None or fresh_until > now:
                return cred
        row = await self._row(req.connector)
        status = row["status"]
        if status == "disconnected":
            raise Disconnected(f"connector {req.connector!r} is disconnected; an admin must reconnect it")
        if row["scope"] == "per_user" and not req.user and req.purpose != "discovery":
            # fail closed: a call without an end user must not run on the admin's own connection
            raise Unauthorized(
                f"connector {req.connector!r} is per-user: calls must carry the end user "
                "(use an agent key bound to a user)"
            )
        org = row["auth_type"] != "oauth2" or self.connections.user_key(row, req.user) == ""
        if org and status == "reauth_required":
            raise ReauthRequired(f"connector {req.connector!r} needs to be authorized again: {row['status_reason']}")
        if org and status == "expired" and row["auth_type"] == "oauth2":
            raise CredentialExpired(f"the connection of connector {req.connector!r} expired; an admin must reconnect")
        exp = row["secret_expires_at"]
        if exp is not None and exp <= now:
            raise CredentialExpired(f"the credential of connector {req.connector!r} expired; an admin must replace it")
        fresh_until = exp - timedelta(seconds=30) if exp is not None else None
        subject = None
        if row["auth_type"] == "jwt_passthrough":
            headers, exp, subject = self._passthrough_headers(row, req.jwe)
        elif row["auth_type"] == "oauth2":
            headers, tokens = await self.connections.headers(row, req.user, force=req.force_refresh)
            exp = tokens.expires_at
            if exp is not None:  # cached only until the vault would refresh it
                fresh_until = exp - timedelta(seconds=self.connections.vault.threshold(tokens))
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
            connector_id=str(row["id"]),
            subject=subject,
        )
        if row["auth_type"] != "jwt_passthrough":
            self._cache[key] = (cred, fresh_until)
        return cred

    async def _step_up(self, req: CredentialRequest) -> NoReturn:
        row = await self._row(req.connector)
        if row["status"] == "disconnected":
            raise Disconnected(f"connector {req.connector!r} is disconnected; an admin must reconnect it")
        if row["auth_type"] != "oauth2":
            raise Forbidden(
                f"upstream {req.connector} asks for scopes ({' '.join(req.step_up_scopes)}) that its static "
                "credential does not carry; an admin must replace the credential"
            )
        if row["scope"] == "per_user" and not req.user:
            raise Unauthorized(f"connector {req.connector!r} is per-user: calls must carry the end user")
        await self.connections.step_up(row, req.user, tuple(req.step_up_scopes))

    def _passthrough_headers(
        self, row: ConnectorRow, token: str | None
    ) -> tuple[dict[str, str], datetime | None, str | None]:
        """(headers, expiry, the verified JWT's `sub`)."""
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
        sub = claims.get("sub")
        subject = sub[:200] if isinstance(sub, str) and sub.isprintable() and sub else None
        return render_headers(secret["header_templates"], jwt_token), exp, subject

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
