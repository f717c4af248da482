from __future__ import annotations

from pydantic import BaseModel, Field
from warden_common.runtime import ServiceSettings, settings_config
from warden_common.settings import HttpSettings


class AdminApis(BaseModel):
    """Where the /mcp/admin tools reach the other services' admin HTTP APIs (with the admin
    token); a tool whose service is not set answers an error that names the setting."""

    connectors_url: str | None = Field(default=None, max_length=500)
    registry_url: str | None = Field(default=None, max_length=500)
    audit_url: str | None = Field(default=None, max_length=500)
    # each request to a service gives up after this long
    timeout_s: float = Field(default=30.0, gt=0, le=600)
    # create/reconnect_connection wait this long for the admin's OAuth consent after showing its URL
    consent_wait_s: float = Field(default=300.0, gt=0, le=3600)


class Settings(ServiceSettings):
    model_config = settings_config("WARDEN_PROXY_")

    http: HttpSettings = Field(default_factory=lambda: HttpSettings(port=8083))
    # dev/test only: allow upstream MCP servers on loopback/private addresses over http
    allow_insecure_upstreams: bool = False
    # how long a resolved tool / visible list / agent key stays cached (events invalidate sooner)
    cache_ttl_s: float = Field(default=30.0, ge=0, le=3600)
    # after a quiet spell, the events publisher waits this long for more before sending: fewer
    # wake-ups of NATS and audit per call under a light load (bench/README.md, proxy); a busy
    # proxy sends at once. Events reach the stream up to this much later.
    event_linger_s: float = Field(default=0.05, ge=0, le=1)
    # drop a cached credential this long before it expires
    credential_skew_s: float = Field(default=30.0, ge=0, le=600)
    # a call held for approval fails with a timeout after this long
    approval_timeout_s: float = Field(default=300.0, gt=0, le=86400)
    # circuit breaker: this many consecutive upstream failures open it for cooldown seconds
    breaker_threshold: int = Field(default=5, ge=1)
    breaker_cooldown_s: float = Field(default=30.0, gt=0)
    # after showing a consent URL, wait this long for the user's connection, then finish the call
    consent_wait_s: float = Field(default=120.0, gt=0, le=3600)
    # a durable call not acked within this long is redelivered (kept alive while running)
    durable_ack_wait_s: float = Field(default=30.0, ge=1, le=3600)
    # a call whose arguments are larger (as JSON) is refused: -32602 on MCP, 413 over HTTP
    max_argument_bytes: int = Field(default=1_000_000, ge=1024, le=64 * 1024 * 1024)
    # internal services (their NATS users) that may name the end user a call acts for (`user`
    # in a NATS call); recorded as "acting for", the NATS user stays the actor. `*`: any caller
    act_for_users: list[str] = Field(default_factory=list, max_length=1000)
    # an upstream result with a list holding more items (a tool result's content items, a
    # resource's contents, ...) is refused before it is built: an isError result on MCP, 502
    # over HTTP, upstream_error over NATS, audited as call.failed
    max_result_items: int = Field(default=10_000, ge=1, le=1_000_000)
    # upstream sessions kept open per connector (one per user, and per end user a
    # jwt_passthrough token vouches for; least recently used closed first, after draining)
    upstream_sessions: int = Field(default=100, ge=1, le=10_000)
    # an upstream session unused for this long is closed
    upstream_idle_s: float = Field(default=300.0, gt=0, le=86_400)
    # SSE resumability (/mcp streams and the HTTP call stream): the `retry:` (ms) the streams
    # suggest to a client that lost its connection, and how long (s) a streamed call waits for
    # that client (and keeps its events) before it is cancelled / forgotten. Per replica memory.
    sse_retry_ms: int = Field(default=3000, ge=100, le=600_000)
    stream_resume_s: float = Field(default=60.0, gt=0, le=3600)
    # Host header values the MCP endpoint accepts (DNS-rebinding guard); empty = any
    allowed_hosts: list[str] = Field(default_factory=list)
    # optional: callers with a bearer JWT from this issuer (an enterprise IdP) besides agent keys
    jwt_issuer: str | None = None
    # the `aud` the token must carry (default: the MCP endpoint's URL, RFC 8707 / RFC 9068)
    jwt_audience: str | None = None
    # where the issuer's keys are (default: `jwks_uri` of its OpenID discovery document)
    jwt_jwks_url: str | None = None
    # which claim names the user, and which the profile (else `jwt_default_profile`)
    jwt_user_claim: str = "sub"
    jwt_profile_claim: str = "warden_profile"
    jwt_default_profile: str | None = None
    # the admin MCP endpoint (/mcp/admin): the services' admin APIs its tools call
    admin_apis: AdminApis = Field(default_factory=AdminApis)
