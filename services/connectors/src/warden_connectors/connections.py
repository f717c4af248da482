"""Connections of oauth2 connectors: consent start, callback, runtime headers, per-user
connections, revocation, and what show() says about them.

A connection is a token row keyed (connector, user key): `''` for the organization (the
admin's consent; for a per-user connector it serves tool discovery and callers without a
user), the user's id for a per-user connection. A caller only ever reaches the row of its own
key: the key comes from the proxy's request, never from anything the caller chose.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, NoReturn

from warden_common.contracts import EventType
from warden_common.errors import NotFound

from warden_connectors.consent import Consent, ConsentStart, Finished, Opened
from warden_connectors.errors import BadInput, ConsentRequired, ReauthRequired
from warden_connectors.oauth import OAuthError, OAuthServer, StateUserMismatch, TokenSet, step_up_scopes
from warden_connectors.store import ConnectorRow, Store
from warden_connectors.tokens import RefreshOutcome, TokenVault, is_client_credentials

__all__ = ["ConnectionState", "Connections", "Emit", "TokenRevocation", "revocation_report"]

log = logging.getLogger(__name__)

ConnectionState = Literal["connection_required", "verifying", "connected", "reauth_required", "expired"]
Emit = Callable[..., None]  # (type, row, actor, *, user=None, status=None, **data)


@dataclass(frozen=True)
class TokenRevocation:
    """How revoking one connection's tokens went, per token: `revoked`, `unsupported_token_type`
    (the provider cannot revoke it, e.g. oidc-provider's JWT access tokens), `failed`,
    `no_endpoint` (the provider has no revocation endpoint), None (no such token)."""

    refresh_token: str | None
    access_token: str | None
    access_token_expires_at: datetime | None = None

    @property
    def access_token_valid_until(self) -> datetime | None:
        """Until when the access token still works at the provider (None: revoked, or unknown)."""
        if self.access_token in (None, "revoked"):
            return None
        return self.access_token_expires_at


# the provider's `unsupported_token_type` (RFC 7009 §2.2.1), under a name the event scrubber keeps
_REPORTED = {"unsupported_token_type": "not_revocable"}


def revocation_report(outcomes: Mapping[str, TokenRevocation]) -> dict[str, Any]:
    """What events and answers say about a revocation (no user ids, no tokens; no key names a
    token either, so the event scrubber keeps them): the count of each outcome for the refresh
    and the access tokens, whether everything was revoked, and when not, until when the
    longest-lived unrevoked access token stays valid at the provider."""
    report: dict[str, Any] = {"connections": len(outcomes), "refresh": {}, "access": {}}
    until: datetime | None = None
    unknown = False
    for o in outcomes.values():
        for kind, outcome in (("refresh", o.refresh_token), ("access", o.access_token)):
            if outcome is not None:
                label = _REPORTED.get(outcome, outcome)
                report[kind][label] = report[kind].get(label, 0) + 1
        if o.access_token not in (None, "revoked"):
            v = o.access_token_valid_until
            if v is None:
                unknown = True
            elif until is None or v > until:
                until = v
    report["complete"] = all(
        o.refresh_token in (None, "revoked") and o.access_token in (None, "revoked") for o in outcomes.values()
    )
    if not report["complete"]:
        if until is not None and until > datetime.now(UTC):
            report["access_valid_until"] = until.isoformat()
        if unknown:
            report["access_expiry_unknown"] = True
    return report


class Connections:
    def __init__(
        self,
        store: Store,
        consent: Consent,
        vault: TokenVault,
        *,
        emit: Emit,
        open_secret: Callable[[ConnectorRow], dict[str, Any]],
        invalidate: Callable[[str], None],
    ) -> None:
        self.store = store
        self.consent = consent
        self.vault = vault
        self.emit = emit
        self.open_secret = open_secret
        self.invalidate = invalidate

    @staticmethod
    def user_key(row: ConnectorRow, user: str | None) -> str:
        return user if row["scope"] == "per_user" and user else ""

    @staticmethod
    def _require_oauth(row: ConnectorRow) -> None:
        if row["auth_type"] != "oauth2":
            raise BadInput(f"connector {row['name']!r} does not use OAuth (auth type {row['auth_type']})")

    # -- consent -----------------------------------------------------------------------
    async def start(self, row: ConnectorRow, user_key: str = "", *, fresh: bool = False) -> ConsentStart:
        self._require_oauth(row)
        if user_key and row["scope"] != "per_user":
            raise BadInput(f"connector {row['name']!r} is organization-wide: per-user connections do not apply")
        if is_client_credentials(row):
            raise BadInput(f"connector {row['name']!r} uses client credentials: there is no consent to give")
        # the organization's consent asks for what a step-up left pending
        extra = tuple(row["step_up_scopes"] or ()) if user_key == "" else ()
        return await self.consent.start(row, user_key, self.open_secret(row), fresh=fresh, scopes=extra)

    async def step_up(self, row: ConnectorRow, user: str | None, required: tuple[str, ...]) -> NoReturn:
        """The upstream answered `403 insufficient_scope` to a call made with this connection:
        a consent for the union of held and required scopes. A user's own connection gets the
        consent URL (the proxy shows it and resumes the call); the organization's connection
        is the admin's to re-authorize, so it records the scopes for that and refuses."""
        self._require_oauth(row)
        key = self.user_key(row, user)
        trow = await self.store.get_token(row["id"], key)
        held = tuple(trow["scopes"].split()) if trow is not None and trow["scopes"] else ()
        union = step_up_scopes(held, required)
        missing = [s for s in union if s not in held] or list(required)
        self.emit(
            EventType.connector_step_up_required,
            row,
            None,
            user=key or None,
            required=list(required),
            missing=missing,
        )
        if key:
            started = await self.consent.start(row, key, self.open_secret(row), scopes=union)
            raise ConsentRequired(
                f"{user} must grant {row['name']} more access ({' '.join(missing)}) for this call: "
                "open the consent URL",
                details={
                    "consent_url": started.url,
                    "expires_at": started.expires_at.isoformat(),
                    "scopes": list(union),
                },
            )
        new = await self.store.set_step_up(row["id"], list(union))
        if new is not None:
            self.invalidate(row["name"])
        raise ReauthRequired(
            f"connector {row['name']!r} needs more scopes for this call ({' '.join(missing)}): an admin must "
            f"authorize it again (POST /v1/connectors/{row['name']}/authorize or "
            f"`warden connectors reconnect {row['name']}`), which asks for them",
            details={"scopes": list(union)},
        )

    async def open(self, nonce: str, cookies: Mapping[str, str]) -> Opened:
        """A person opened their consent link (`/connect/start/<nonce>`); a refusal is audited."""
        try:
            return await self.consent.open(nonce, cookies)
        except StateUserMismatch as e:
            row = await self._flow_row(e.details.get("connector_id"))
            if row is not None:
                await self._failed(row, str(e.details.get("user") or ""), e, browser=True)
            raise

    async def _flow_row(self, connector_id: object) -> ConnectorRow | None:
        try:
            return await self.store.get_by_id(uuid.UUID(str(connector_id)))
        except ValueError:
            return None

    async def callback(
        self, params: Mapping[str, str], cookies: Mapping[str, str] | None = None
    ) -> tuple[ConnectorRow, str]:
        """The browser came back: check it is the one that started a person's consent, consume
        the state, redeem the code, store the tokens sealed."""
        flow = self.consent.peek(params.get("state"))
        try:
            cid = uuid.UUID(flow.connector_id)
        except ValueError:
            raise NotFound("the connector of this consent no longer exists") from None
        row = await self.store.get_by_id(cid)
        if row is None or row["auth_type"] != "oauth2":
            raise NotFound("the connector of this consent no longer exists")
        try:
            self.consent.check_browser(flow, cookies or {})
        except StateUserMismatch as e:
            # the flow leaked out of its browser: burn it (a code for it is in a stranger's hands,
            # and the state with it); the person starts again
            await self.store.consume_flow(flow.nonce)
            await self._failed(row, flow.user, e, browser=True)
            raise
        try:
            done = await self.consent.finish(row, flow, params, self.open_secret(row))
        except OAuthError as e:
            await self._failed(row, flow.user, e)
            raise
        return await self._connected(row, done), done.user_key

    async def obtain(self, row: ConnectorRow, *, fresh: bool = False) -> ConnectorRow:
        """Client credentials: the organization's token, from the token endpoint at once."""
        self._require_oauth(row)
        try:
            done = await self.consent.obtain(row, self.open_secret(row), fresh=fresh)
        except OAuthError as e:
            await self._failed(row, "", e)
            raise
        return await self._connected(row, done)

    async def _connected(self, row: ConnectorRow, done: Finished) -> ConnectorRow:
        await self.vault.save(row, done.user_key, done.tokens, done.server, done.client.client_id)
        if done.user_key == "":
            await self.store.set_consent_failure(row["id"], None)
        if done.user_key == "" and row["step_up_scopes"]:
            row = await self.store.set_step_up(row["id"], []) or row  # the consent asked for them
        new = await self.store.set_status(row["id"], "active", None) or row
        self.invalidate(row["name"])
        self.emit(
            EventType.connector_connected,
            new,
            None,
            user=done.user_key or None,
            issuer=done.server.issuer,
            scopes=list(done.tokens.scope),
            account=done.tokens.account(),
        )
        if new is not row:
            self.emit(EventType.connector_status_changed, new, None, previous=row["status"])
        return new

    async def _failed(self, row: ConnectorRow, user_key: str, e: OAuthError, *, browser: bool = False) -> None:
        """A consent that came back refused: an event (a call waiting for it ends at once, with
        the reason), and an organization connection not yet active says so in its status.
        `browser`: refused because another browser than the starting one came (no status change:
        the person can still finish in their own browser)."""
        extra: dict[str, Any] = {"refused": "other_browser"} if browser else {}
        self.emit(EventType.connector_consent_failed, row, None, user=user_key or None, reason=e.message[:500], **extra)
        if browser:
            return
        if user_key == "":  # what `warden connectors add/reconnect` wait on, and `show` says
            await self.store.set_consent_failure(row["id"], e.message[:500])
        if user_key == "" and row["status"] != "active":
            new = await self.store.set_status(row["id"], "error", e.message[:500])
            if new is not None:
                self.emit(EventType.connector_status_changed, new, None, previous=row["status"], reason=e.message)

    # -- the proxy's credential ---------------------------------------------------------
    async def headers(self, row: ConnectorRow, user: str | None, *, force: bool) -> tuple[dict[str, str], TokenSet]:
        key = self.user_key(row, user)
        secret = self.open_secret(row)
        try:
            tokens = await self.vault.access(row, key, secret, force=force)
        except ConsentRequired:
            if is_client_credentials(row):  # nobody has to consent: get the token now
                await self.obtain(row)
                return await self.headers(row, user, force=False)
            if key:
                started = await self.consent.start(row, key, secret)
                raise ConsentRequired(
                    f"{user} has not connected {row['name']} yet: open the consent URL to connect",
                    details={"consent_url": started.url, "expires_at": started.expires_at.isoformat()},
                ) from None
            raise ConsentRequired(
                f"connector {row['name']!r} is not authorized yet: an admin must authorize it "
                f"(POST /v1/connectors/{row['name']}/authorize or `warden connectors reconnect {row['name']}`)"
            ) from None
        headers = dict(secret.get("headers") or {})
        headers["Authorization"] = f"Bearer {tokens.access_token.get_secret_value()}"
        return headers, tokens

    async def on_token_change(
        self, row: ConnectorRow, user_key: str, outcome: RefreshOutcome, data: dict[str, Any]
    ) -> None:
        """Called by the vault after a refresh attempt: events and statuses, never a secret."""
        user = user_key or None
        self.invalidate(row["name"])
        if outcome == "refreshed":
            self.emit(EventType.connector_refreshed, row, None, user=user, **data)
            return
        self.emit(EventType.connector_refresh_failed, row, None, user=user, outcome=outcome, **data)
        if outcome not in ("reauth_required", "expired"):
            return
        if user_key == "":
            new = await self.store.set_status(row["id"], outcome, str(data.get("reason") or "")[:500])
            if new is not None:
                self.emit(EventType.connector_status_changed, new, None, previous=row["status"])
        else:
            self.emit(EventType.connector_status_changed, row, None, user=user, status=outcome, connection=outcome)

    # -- per-user connections -----------------------------------------------------------------
    async def connection(self, row: ConnectorRow, user: str) -> dict[str, Any]:
        self._require_oauth(row)
        key = self.user_key(row, user)
        trow = await self.store.get_token(row["id"], key)
        state: ConnectionState
        if trow is not None and trow["status"] == "active":
            state = "connected"
        elif trow is not None and trow["status"] in ("reauth_required", "expired"):
            state = trow["status"]
        elif await self.store.pending_flow(row["id"], key):
            state = "verifying"
        else:
            state = "connection_required"
        out: dict[str, Any] = {"connector": row["name"], "user": user, "status": state}
        if trow is not None:
            out.update(
                scopes=trow["scopes"].split(),
                connected_at=trow["obtained_at"],
                expires_at=trow["expires_at"],
                reason=trow["status_reason"],
                account=trow["account"],  # the upstream account it was linked to
            )
        return out

    async def disconnect(self, row: ConnectorRow, user_key: str | None) -> dict[str, TokenRevocation]:
        """Purge the tokens of one user key (or all), then revoke them at the provider.
        Purging first means every request fails closed even if the provider is slow.
        The outcome per user key and per token: an access token the provider did not revoke
        stays valid there until it expires (`access_valid_until` in the report)."""
        rows = await self.store.purge_tokens(row["id"], user_key)
        await self.store.drop_flows(row["id"], user_key)
        self.invalidate(row["name"])
        secret = self.open_secret(row) if row["auth_type"] == "oauth2" else {}
        outcomes: dict[str, TokenRevocation] = {}
        for trow in rows:
            expires_at: datetime | None = trow["expires_at"]
            try:
                held = self.vault.open(trow)
                expires_at = held.tokens.expires_at or expires_at
                result = await self.consent.revoke(row, held.tokens, secret)
            except (OAuthError, ValueError, KeyError) as e:
                log.warning("revoking tokens of %s failed: %s", row["name"], getattr(e, "message", type(e).__name__))
                outcomes[trow["user_key"]] = TokenRevocation("failed", "failed", expires_at)
                continue
            if result is None:
                outcomes[trow["user_key"]] = TokenRevocation(None, "no_endpoint", expires_at)
            else:
                outcomes[trow["user_key"]] = TokenRevocation(result.refresh_token, result.access_token, expires_at)
        return outcomes

    # -- show ------------------------------------------------------------------------------
    async def details(self, row: ConnectorRow) -> dict[str, Any]:
        """Discovered endpoints, the client (id, whether a secret is stored), redirect URI,
        granted scopes. No secrets."""
        cfg = row["auth_config"]
        out: dict[str, Any] = {"redirect_uri": self.consent.redirect_uri}
        server = OAuthServer.model_validate(row["oauth_server"]) if row["oauth_server"] else None
        if server is not None:
            out.update(
                issuer=server.issuer,
                authorization_endpoint=server.authorization_endpoint,
                token_endpoint=server.token_endpoint,
                registration_endpoint=server.registration_endpoint,
                revocation_endpoint=server.revocation_endpoint,
                resource=server.resource,
                requested_scopes=list(server.scopes_to_request()),
            )
        if cfg.get("client_id"):
            out.update(
                client_id=cfg["client_id"],
                client_source="static",
                token_endpoint_auth_method=cfg.get("token_endpoint_auth_method")
                or ("client_secret_basic" if row["secret_sealed"] is not None else "none"),
                client_secret_stored="client_secret" in self.open_secret(row),
                private_key_stored="private_key" in self.open_secret(row),
                grant_type=cfg.get("grant_type", "authorization_code"),
            )
        elif server is not None and (rec := await self.store.get_client(row["id"], server.issuer)) is not None:
            out.update(
                client_id=rec["client_id"],
                client_source=rec["source"],
                token_endpoint_auth_method=rec["auth_method"],
                client_secret_stored=rec["auth_method"] != "none",
            )
        tokens = await self.store.list_tokens(row["id"])
        org = next((t for t in tokens if t["user_key"] == ""), None)
        if org is not None:
            out.update(
                granted_scopes=org["scopes"].split(),
                connected_at=_iso(org["obtained_at"]),
                token_expires_at=_iso(org["expires_at"]),
                connection_status=org["status"],
            )
        failed = await self.store.consent_failure(row["id"])
        if failed is not None:  # the organization's last refused consent since it last connected
            out["last_consent_failure"] = {
                "at": _iso(failed["consent_failed_at"]),
                "reason": failed["consent_failed_reason"],
            }
        if row["scope"] == "per_user":
            out["user_connections"] = len([t for t in tokens if t["user_key"] and t["status"] == "active"])
        return out


def _iso(v: datetime | None) -> str | None:
    return v.isoformat() if v is not None else None
