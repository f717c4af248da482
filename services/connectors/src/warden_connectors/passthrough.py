"""jwt_passthrough: open the embedding site's JWE and check the JWT inside.

JWE: RSA-OAEP-256 (or RSA-OAEP, which embedding sites often use) key wrap + A256GCM
content encryption, to this connector's public key. A token with another algorithm is
refused naming the algorithm, not the key.
JWT: RS256, signed by the site; `exp` and `aud` required (and `iss` when configured).
Any failure raises `PassthroughRefused` with a reason a person can act on; the token
itself never appears in an error.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from joserfc import jwe, jwt
from joserfc.errors import JoseError
from joserfc.jwe import JWERegistry
from joserfc.jwk import RSAKey
from joserfc.jwt import JWTClaimsRegistry
from warden_common.errors import Unauthorized

__all__ = ["PassthroughRefused", "new_keypair", "open_passthrough", "render_headers"]

_KEY_WRAP = ("RSA-OAEP-256", "RSA-OAEP")
_ENC = ("A256GCM",)
_JWE = JWERegistry(algorithms=[*_KEY_WRAP, *_ENC])


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
    _check_algorithms(token)
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


def _check_algorithms(token: str) -> None:
    """Refuse a token whose protected header names an algorithm this connector does not take,
    saying so (instead of a decryption failure that blames the key)."""
    parts = token.split(".")
    if len(parts) != 5:
        raise PassthroughRefused("the site token is not a compact JWE (five dot-separated parts)")
    try:
        raw = parts[0] + "=" * (-len(parts[0]) % 4)
        header = json.loads(base64.urlsafe_b64decode(raw))
    except (ValueError, TypeError):
        raise PassthroughRefused("the site token's JWE header is not base64url JSON") from None
    if not isinstance(header, dict):
        raise PassthroughRefused("the site token's JWE header is not a JSON object")
    alg, enc = header.get("alg"), header.get("enc")
    if alg not in _KEY_WRAP:
        shown = alg[:40] if isinstance(alg, str) and alg.isprintable() else "none"
        raise PassthroughRefused(
            f"the site token's key wrap algorithm {shown!r} is not accepted; use {' or '.join(_KEY_WRAP)}"
        )
    if enc not in _ENC:
        shown = enc[:40] if isinstance(enc, str) and enc.isprintable() else "none"
        raise PassthroughRefused(
            f"the site token's content encryption {shown!r} is not accepted; use {' or '.join(_ENC)}"
        )


def render_headers(templates: dict[str, str], token: str) -> dict[str, str]:
    return {k: v.replace("%{jwt_token}", token) for k, v in templates.items()}
