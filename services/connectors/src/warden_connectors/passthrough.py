"""jwt_passthrough: open the embedding site's JWE and check the JWT inside.

JWE: RSA-OAEP-256 key wrap + A256GCM content encryption, to this connector's public key.
JWT: RS256, signed by the site; `exp` and `aud` required (and `iss` when configured).
Any failure raises `PassthroughRefused` with a reason a person can act on; the token
itself never appears in an error.
"""

from __future__ import annotations

from typing import Any

from joserfc import jwe, jwt
from joserfc.errors import JoseError
from joserfc.jwe import JWERegistry
from joserfc.jwk import RSAKey
from joserfc.jwt import JWTClaimsRegistry
from warden_common.errors import Unauthorized

__all__ = ["PassthroughRefused", "new_keypair", "open_passthrough", "render_headers"]

_JWE = JWERegistry(algorithms=["RSA-OAEP-256", "A256GCM"])


class PassthroughRefused(Unauthorized):
    pass


def new_keypair() -> tuple[str, dict[str, Any]]:
    """(private key PEM to seal, public JWK to publish)."""
    key = RSAKey.generate_key(2048)
    public = dict(key.as_dict(private=False))
    public.update({"use": "enc", "alg": "RSA-OAEP-256"})
    return key.as_pem(private=True).decode(), public


def open_passthrough(
    token: str, *, private_pem: str, site_jwk: dict[str, Any], audience: str, issuer: str | None
) -> tuple[str, dict[str, Any]]:
    """Return (the inner JWT, its claims) or raise PassthroughRefused."""
    try:
        inner = jwe.decrypt_compact(token, RSAKey.import_key(private_pem), registry=_JWE).plaintext
    except (JoseError, ValueError):
        raise PassthroughRefused("the site token could not be decrypted with this connector's key") from None
    if inner is None:
        raise PassthroughRefused("the site token is empty")
    try:
        decoded = jwt.decode(inner, RSAKey.import_key(site_jwk), algorithms=["RS256"])
    except (JoseError, ValueError):
        raise PassthroughRefused("the site token's signature does not verify with the site's public key") from None
    claims: dict[str, Any] = {"aud": {"essential": True, "value": audience}, "exp": {"essential": True}}
    if issuer:
        claims["iss"] = {"essential": True, "value": issuer}
    try:
        JWTClaimsRegistry(**claims).validate(decoded.claims)
    except JoseError as e:
        raise PassthroughRefused(f"the site token was refused: {e.error}") from None
    return inner.decode(), dict(decoded.claims)


def render_headers(templates: dict[str, str], token: str) -> dict[str, str]:
    return {k: v.replace("%{jwt_token}", token) for k, v in templates.items()}
