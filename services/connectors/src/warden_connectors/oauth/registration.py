"""Which client Warden uses with an authorization server, in order:

1. a client the admin registered (`StaticClient`),
2. a client ID metadata document Warden serves, when the AS supports it,
3. dynamic client registration (RFC 7591), when the AS has a registration endpoint,
4. otherwise `RegistrationUnavailable`, saying what the admin must provide.

The service persists the result (DCR especially: a second registration is a second client).
"""

from __future__ import annotations

from .cimd import ClientMetadataDocument, cimd_registration
from .client import ClientRegistration, StaticClient
from .discovery import OAuthServer
from .errors import RegistrationUnavailable
from .rfc7591 import register_client
from .urlguard import GuardedHttp

__all__ = ["obtain_client"]


async def obtain_client(
    http: GuardedHttp,
    server: OAuthServer,
    *,
    redirect_uri: str,
    static: StaticClient | None = None,
    cimd: ClientMetadataDocument | None = None,
    allow_dcr: bool = True,
    client_name: str = "Warden",
) -> ClientRegistration:
    if static is not None:
        return ClientRegistration(
            issuer=server.issuer,
            client_id=static.client_id,
            client_secret=static.client_secret,
            token_endpoint_auth_method=static.auth_method,
            source="static",
            redirect_uri=redirect_uri,
            private_key=static.private_key,
            signing_alg=static.signing_alg,
        )
    if cimd is not None and server.cimd_supported:
        if redirect_uri not in cimd.redirect_uris:
            raise RegistrationUnavailable("the client ID metadata document does not list the redirect URI Warden uses")
        return cimd_registration(cimd, server.issuer)
    if allow_dcr and server.registration_endpoint:
        return await register_client(http, server, redirect_uri=redirect_uri, client_name=client_name)
    offers = []
    if not server.cimd_supported:
        offers.append("it does not support client ID metadata documents")
    elif cimd is None:
        offers.append("it supports client ID metadata documents but Warden has no public URL configured for one")
    if not server.registration_endpoint:
        offers.append("it has no dynamic client registration endpoint")
    elif not allow_dcr:
        offers.append("dynamic client registration is turned off for this connector")
    raise RegistrationUnavailable(
        f"cannot obtain an OAuth client at {server.issuer}: {'; '.join(offers)}. "
        f"Register a client with the provider (redirect URI {redirect_uri}) and give Warden its "
        "client id, client secret and token endpoint auth method",
        details={"issuer": server.issuer, "redirect_uri": redirect_uri},
    )
