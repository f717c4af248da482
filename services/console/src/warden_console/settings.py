"""Console settings: env prefix `WARDEN_CONSOLE_`, nested groups with `__`
(`WARDEN_CONSOLE_SERVICES__PROXY=http://proxy:8083`). No credential of its own by default:
every request to a service carries the signed-in person's admin token or agent key. Only
with single sign-on (`OIDC__ISSUER`) may it hold the deployment's root admin token, for the
admins who sign in through the issuer (their requests name them in `X-Warden-Actor`)."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings
from warden_common.runtime import settings_config
from warden_common.settings import HttpSettings

__all__ = ["OidcSettings", "ServiceUrls", "Settings"]


class OidcSettings(BaseModel):
    """Single sign-on with the OIDC issuer the proxy trusts for JWT callers
    (`WARDEN_PROXY_JWT_ISSUER`): authorization code with PKCE, state and nonce."""

    # the issuer (exactly as in its discovery document); unset: no "Sign in with" button
    issuer: str | None = None
    # the console's client at the issuer; unset: registered at start of the first sign-in by
    # dynamic client registration (RFC 7591), when the issuer offers it (kept in memory)
    client_id: str | None = None
    client_secret: SecretStr | None = None
    # the access token's audience, asked for as `resource` (RFC 8707): what the proxy checks
    # (WARDEN_PROXY_JWT_AUDIENCE; default: the MCP URL, as the proxy's default)
    audience: str | None = None
    scope: str = "openid warden:admin"
    # an admin: this scope in the access token, or (when set) a claim `name=value` (a string
    # equal to value, or a list holding it) in the ID or access token
    admin_scope: str = "warden:admin"
    admin_claim: str | None = None
    # the claim naming the person (the proxy's WARDEN_PROXY_JWT_USER_CLAIM)
    user_claim: str = "sub"
    # the button's "Sign in with <name>" (default: the issuer's host)
    name: str | None = None
    # where the issuer sends the browser back (default: HTTP__PUBLIC_URL + /login/oidc/callback)
    redirect_url: str | None = None
    # dev/test only: an issuer on plain http (loopback)
    allow_insecure_http: bool = False
    # every request to the issuer
    timeout_s: float = Field(default=10.0, gt=0, le=120)

    @field_validator("issuer")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and urlsplit(v).scheme not in ("http", "https"):
            raise ValueError("the issuer is an http(s) URL")
        return v

    @field_validator("admin_claim")
    @classmethod
    def _claim(cls, v: str | None) -> str | None:
        if v is not None and (not v.partition("=")[0] or not v.partition("=")[2]):
            raise ValueError("write the admin claim as name=value, e.g. groups=warden-admins")
        return v

    @model_validator(mode="after")
    def _https(self) -> OidcSettings:
        if self.issuer and urlsplit(self.issuer).scheme != "https" and not self.allow_insecure_http:
            raise ValueError(
                "the OIDC issuer must use https (OIDC__ALLOW_INSECURE_HTTP=true for a loopback dev issuer)"
            )
        if self.issuer and "openid" not in self.scope.split():
            raise ValueError("OIDC__SCOPE must include openid")
        return self


class ServiceUrls(BaseModel):
    """Where the console reaches each service's HTTP API (inside the cluster)."""

    connectors: str = "http://127.0.0.1:8081"
    registry: str = "http://127.0.0.1:8082"
    proxy: str = "http://127.0.0.1:8083"
    audit: str = "http://127.0.0.1:8084"

    @field_validator("connectors", "registry", "proxy", "audit")
    @classmethod
    def _http(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("a service URL starts with http:// or https://")
        return v.rstrip("/")


class Settings(BaseSettings):
    model_config = settings_config("WARDEN_CONSOLE_")

    http: HttpSettings = Field(default_factory=lambda: HttpSettings(port=8080))
    services: ServiceUrls = Field(default_factory=ServiceUrls)
    # the MCP endpoint as agents reach it, for the client config shown with a new agent key
    # (default: the proxy's URL above + /mcp)
    mcp_url: str | None = None
    # a session ends this long after sign-in (the cookie and the server-side entry alike)
    session_ttl_s: float = Field(default=8 * 3600, ge=60, le=7 * 24 * 3600)
    # sessions held at once; the oldest is dropped beyond this
    max_sessions: int = Field(default=10_000, ge=1, le=1_000_000)
    # the cookie's Secure flag: keep it on behind https; off only for a plain-http dev run
    cookie_secure: bool = True
    # every request to a service (a streamed call or tail: until its first byte)
    upstream_timeout_s: float = Field(default=30.0, gt=0, le=600)
    log_level: str = "info"
    # single sign-on (see OidcSettings)
    oidc: OidcSettings = Field(default_factory=OidcSettings)
    # the deployment's root ADMIN_TOKEN, only for admins signed in through the issuer: their
    # requests carry it with `X-Warden-Actor: <their name>`, as the proxy's /mcp/admin does
    # for an admin-scoped JWT. Unset: the issuer's admins are refused (its end users still sign in)
    admin_token: SecretStr | None = None
