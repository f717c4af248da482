"""OAuth 2.1 client core of the connectors service: pure async logic over a guarded httpx client.

Laid out by spec: `urlguard` (SSRF guard every request goes through), `rfc9728` (protected
resource metadata), `rfc8414` (AS metadata + OIDC discovery), `discovery` (the whole chain,
overrides, cache), `rfc7591` (DCR), `cimd` (client ID metadata document), `registration` (which
client to use), `pkce`, `state`, `flow` (authorize / callback / exchange / refresh / revoke),
`tokens`, `errors`; the WWW-Authenticate parser and scope step-up union live in
`warden_common.rfc6750` (the proxy reads upstream challenges too).

No FastAPI, NATS or database here: the service persists client registrations, token sets and
used state nonces, and maps `OAuthError`s at its edges.
"""

from warden_common.rfc6750 import BearerChallenge, parse_bearer_challenge, step_up_scopes

from .cimd import ClientMetadataDocument, validate_cimd_url
from .client import AuthMethod, ClientRegistration, StaticClient
from .discovery import DiscoveryCache, OAuthOverrides, OAuthServer, discover
from .errors import (
    AuthorizationCodeMissing,
    AuthorizationDenied,
    AuthorizationFailed,
    AuthorizationIssuerMismatch,
    BadResponse,
    ClientAuthFailed,
    DiscoveryFailed,
    ForbiddenAddress,
    InsecureUrl,
    InvalidTokenResponse,
    IssuerMismatch,
    MetadataInvalid,
    OAuthError,
    PkceUnsupported,
    ProviderTimeout,
    ProviderUnavailable,
    ReauthRequired,
    RegistrationRejected,
    RegistrationUnavailable,
    ResourceMismatch,
    ResponseTooLarge,
    StateExpired,
    StateInvalid,
    StateReplayed,
    StateUserMismatch,
    TokenRequestFailed,
    TooManyRedirects,
    UrlRefused,
)
from .flow import (
    AuthorizationRequest,
    RevocationResult,
    authorization_url,
    client_credentials,
    complete,
    exchange_code,
    parse_callback,
    refresh,
    revoke,
)
from .pkce import challenge_s256, new_verifier
from .registration import obtain_client
from .rfc7591 import register_client
from .rfc8414 import AuthorizationServerMetadata
from .rfc9728 import ProtectedResourceMetadata
from .state import STATE_TTL_S, FlowState, InMemoryNonceStore, NonceStore, StateCodec
from .tokens import TokenSet, parse_token_response
from .urlguard import FetchResult, GuardedHttp, UrlPolicy, check_address, check_url

__all__ = [
    "STATE_TTL_S",
    "AuthMethod",
    "AuthorizationCodeMissing",
    "AuthorizationDenied",
    "AuthorizationFailed",
    "AuthorizationIssuerMismatch",
    "AuthorizationRequest",
    "AuthorizationServerMetadata",
    "BadResponse",
    "BearerChallenge",
    "ClientAuthFailed",
    "ClientMetadataDocument",
    "ClientRegistration",
    "DiscoveryCache",
    "DiscoveryFailed",
    "FetchResult",
    "FlowState",
    "ForbiddenAddress",
    "GuardedHttp",
    "InMemoryNonceStore",
    "InsecureUrl",
    "InvalidTokenResponse",
    "IssuerMismatch",
    "MetadataInvalid",
    "NonceStore",
    "OAuthError",
    "OAuthOverrides",
    "OAuthServer",
    "PkceUnsupported",
    "ProtectedResourceMetadata",
    "ProviderTimeout",
    "ProviderUnavailable",
    "ReauthRequired",
    "RegistrationRejected",
    "RegistrationUnavailable",
    "ResourceMismatch",
    "ResponseTooLarge",
    "RevocationResult",
    "StateCodec",
    "StateExpired",
    "StateInvalid",
    "StateReplayed",
    "StateUserMismatch",
    "StaticClient",
    "TokenRequestFailed",
    "TokenSet",
    "TooManyRedirects",
    "UrlPolicy",
    "UrlRefused",
    "authorization_url",
    "challenge_s256",
    "check_address",
    "check_url",
    "complete",
    "discover",
    "exchange_code",
    "new_verifier",
    "obtain_client",
    "parse_bearer_challenge",
    "parse_callback",
    "parse_token_response",
    "refresh",
    "client_credentials",
    "register_client",
    "revoke",
    "step_up_scopes",
    "validate_cimd_url",
]
