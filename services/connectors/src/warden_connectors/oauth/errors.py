"""Errors of the OAuth client core, drawn once.

    OAuthError(WardenError)                     code / http_status / retryable from warden_common
    ├── UrlRefused                 400 invalid   the URL guard refused a URL before any byte was sent
    │   ├── InsecureUrl                          http:// (or another scheme) where https is required
    │   ├── ForbiddenAddress                     the host is, or resolves to, a private/loopback/
    │   │                                        link-local/multicast/reserved address
    │   └── TooManyRedirects
    ├── BadResponse                502 invalid   an endpoint answered something we cannot use
    │   ├── ResponseTooLarge
    │   └── MetadataInvalid                      metadata is malformed or inconsistent
    │       ├── ResourceMismatch                 RFC 9728 `resource` is not this MCP server
    │       ├── IssuerMismatch                   RFC 8414 `issuer` is not the one we asked
    │       └── PkceUnsupported                  the AS does not advertise S256
    ├── DiscoveryFailed            424 invalid   no metadata found and nothing overrides it
    ├── ProviderUnavailable        503 unavailable (retryable)  connection refused, 5xx, 429
    │   └── ProviderTimeout        504 timeout   (retryable)
    ├── RegistrationUnavailable    409 invalid   no registered client, no CIMD, no DCR: says what to set
    ├── RegistrationRejected       424 invalid   the AS refused dynamic registration
    ├── StateInvalid               400 forbidden forged, malformed or for another key
    │   ├── StateExpired                         older than its TTL (STATE_TTL_S, 10 minutes)
    │   ├── StateReplayed                        its nonce was already consumed
    │   └── StateUserMismatch                    the callback is not from the person who started it
    ├── AuthorizationFailed        400 forbidden the AS redirected back with `error=...`
    │   ├── AuthorizationDenied                  error=access_denied
    │   ├── AuthorizationIssuerMismatch          RFC 9207 `iss` missing or not our issuer
    │   └── AuthorizationCodeMissing
    └── TokenRequestFailed         424 invalid   the token endpoint answered an OAuth error
        ├── ClientAuthFailed                     invalid_client: the registration is stale or wrong
        ├── ReauthRequired         409 reauth_required  invalid_grant on refresh: consent again
        └── InvalidTokenResponse                 a 200 that is not a usable bearer token response

Messages are written for an admin or user to act on. They never carry a secret (client
secret, token, authorization code, PKCE verifier): text coming from a provider passes
through `scrub()` with the secrets of the request that produced it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, ClassVar

from warden_common.contracts import ErrorCode
from warden_common.errors import WardenError

__all__ = [
    "AuthorizationCodeMissing",
    "AuthorizationDenied",
    "AuthorizationFailed",
    "AuthorizationIssuerMismatch",
    "BadResponse",
    "ClientAuthFailed",
    "DiscoveryFailed",
    "ForbiddenAddress",
    "InsecureUrl",
    "InvalidTokenResponse",
    "IssuerMismatch",
    "MetadataInvalid",
    "OAuthError",
    "PkceUnsupported",
    "ProviderTimeout",
    "ProviderUnavailable",
    "ReauthRequired",
    "RegistrationRejected",
    "RegistrationUnavailable",
    "ResourceMismatch",
    "ResponseTooLarge",
    "StateExpired",
    "StateInvalid",
    "StateReplayed",
    "StateUserMismatch",
    "TokenRequestFailed",
    "TooManyRedirects",
    "UrlRefused",
    "scrub",
]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def scrub(text: str | None, secrets: Iterable[str | None] = (), limit: int = 300) -> str:
    """Provider-supplied text made safe for a message: secrets masked, one line, bounded."""
    if not text:
        return ""
    out = _CONTROL.sub(" ", str(text))
    for s in secrets:
        if s and len(s) >= 4:
            out = out.replace(s, "[redacted]")
    return out[:limit]


class OAuthError(WardenError):
    """Root of the OAuth client errors. `oauth_error` is the provider's wire code, if any."""

    code: ClassVar[ErrorCode] = ErrorCode.invalid
    http_status: ClassVar[int] = 400
    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, oauth_error: str | None = None, details: dict[str, Any] | None = None) -> None:
        d = dict(details or {})
        if oauth_error:
            d.setdefault("oauth_error", oauth_error)
        super().__init__(message, details=d)
        self.oauth_error = oauth_error

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


# --- the URL guard -------------------------------------------------------------------------


class UrlRefused(OAuthError):
    code = ErrorCode.invalid
    http_status = 400


class InsecureUrl(UrlRefused):
    pass


class ForbiddenAddress(UrlRefused):
    pass


class TooManyRedirects(UrlRefused):
    pass


# --- what came back ------------------------------------------------------------------------


class BadResponse(OAuthError):
    code = ErrorCode.invalid
    http_status = 502


class ResponseTooLarge(BadResponse):
    pass


class MetadataInvalid(BadResponse):
    pass


class ResourceMismatch(MetadataInvalid):
    pass


class IssuerMismatch(MetadataInvalid):
    pass


class PkceUnsupported(MetadataInvalid):
    pass


class DiscoveryFailed(OAuthError):
    code = ErrorCode.invalid
    http_status = 424


class ProviderUnavailable(OAuthError):
    code = ErrorCode.unavailable
    http_status = 503
    retryable = True


class ProviderTimeout(ProviderUnavailable):
    code = ErrorCode.timeout
    http_status = 504


# --- client registration -------------------------------------------------------------------


class RegistrationUnavailable(OAuthError):
    code = ErrorCode.invalid
    http_status = 409


class RegistrationRejected(OAuthError):
    code = ErrorCode.invalid
    http_status = 424


# --- the consent round trip ----------------------------------------------------------------


class StateInvalid(OAuthError):
    code = ErrorCode.forbidden
    http_status = 400


class StateExpired(StateInvalid):
    pass


class StateReplayed(StateInvalid):
    pass


class StateUserMismatch(StateInvalid):
    http_status = 403


class AuthorizationFailed(OAuthError):
    code = ErrorCode.forbidden
    http_status = 400


class AuthorizationDenied(AuthorizationFailed):
    http_status = 403


class AuthorizationIssuerMismatch(AuthorizationFailed):
    pass


class AuthorizationCodeMissing(AuthorizationFailed):
    pass


# --- the token endpoint --------------------------------------------------------------------


class TokenRequestFailed(OAuthError):
    code = ErrorCode.invalid
    http_status = 424


class ClientAuthFailed(TokenRequestFailed):
    pass


class ReauthRequired(TokenRequestFailed):
    code = ErrorCode.reauth_required
    http_status = 409


class InvalidTokenResponse(TokenRequestFailed):
    pass
