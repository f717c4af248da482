"""How a connector is shown: the admin view (warnings, never a secret) and copy-as-JSON."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from warden_connectors.models import ConnectorView
from warden_connectors.store import ConnectorRow

__all__ = ["as_json", "render"]


def render(row: ConnectorRow, warning_days: int) -> ConnectorView:
    warnings: list[str] = []
    exp = row["secret_expires_at"]
    status, reason = row["status"], row["status_reason"]
    if exp is not None:
        now = datetime.now(UTC)
        if exp <= now:
            warnings.append(f"the credential expired on {exp.date().isoformat()}")
            if status == "active":  # the same rule as the store's listing by status
                status, reason = "expired", f"the static credential expired at {exp.isoformat()}: set a new one"
        elif exp - now <= timedelta(days=warning_days):
            warnings.append(f"the credential expires on {exp.date().isoformat()}")
    if row["step_up_scopes"]:
        warnings.append(
            f"tool calls need more scopes ({' '.join(row['step_up_scopes'])}): authorize the connector again"
        )
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
        status=status,
        status_reason=reason,
        warnings=warnings,
        config_version=row["config_version"],
        expires_at=exp,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        last_used_at=row["last_used_at"],
    )


def as_json(row: ConnectorRow, secret: dict[str, Any]) -> dict[str, Any]:
    """The connector as a create body, for copying: never a secret (they are listed as omitted)."""
    cfg = dict(row["auth_config"])
    auth: dict[str, Any] = {"type": row["auth_type"]}
    omitted: list[str] = []
    match row["auth_type"]:
        case "bearer":
            omitted = ["auth.token"]
        case "api_key":
            auth["header"] = cfg.get("header")
            omitted = ["auth.key"]
        case "custom_headers":
            omitted = [f"auth.headers.{h}" for h in cfg.get("header_names", [])]
        case "jwt_passthrough":
            auth.update({k: cfg[k] for k in ("site_public_jwk", "audience", "issuer") if cfg.get(k)})
            omitted = ["auth.headers (templates)"]
        case "oauth2":
            auth.update({k: v for k, v in cfg.items() if k != "extra_header_names" and v is not None})
            if "client_secret" in secret:
                omitted.append("auth.client_secret")
            if "private_key" in secret:
                omitted.append("auth.private_key")
            omitted += [f"auth.extra_headers.{h}" for h in cfg.get("extra_header_names", [])]
    body: dict[str, Any] = {
        "name": row["name"],
        "url": row["url"],
        "transport": row["transport"],
        "description": row["description"],
        "scope": row["scope"],
        "auth": auth,
        "timeout_s": row["timeout_s"],
    }
    if row["secret_expires_at"] is not None:
        body["expires_at"] = row["secret_expires_at"].isoformat()
    return {"connector": body, "secrets_omitted": omitted}
