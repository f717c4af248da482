"""The claim rules of JWT callers (pure logic: keys made here, the JWKS served from memory)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey
from warden_common.errors import Unauthorized
from warden_proxy.jwt_callers import JwtCallerConfig, JwtCallers

ISS = "https://idp.example"
AUD = "https://warden.example/mcp"
KEY = ECKey.generate_key("P-256", parameters={"kid": "k1"})
OTHER = ECKey.generate_key("P-256", parameters={"kid": "k1"})


def _verifier(**kw: Any) -> JwtCallers:
    jwks = {"keys": [KEY.as_dict(private=False)]}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/.well-known/openid-configuration":
            return httpx.Response(200, json={"issuer": ISS, "jwks_uri": f"{ISS}/jwks"})
        return httpx.Response(200, json=jwks)

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return JwtCallers(JwtCallerConfig(issuer=ISS, audience=AUD, **kw), http=http)


def _token(key: ECKey = KEY, **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": ISS, "aud": AUD, "sub": "zoe", "iat": now, "exp": now + 300, **claims}
    return jwt.encode({"alg": "ES256", "kid": "k1"}, {k: v for k, v in body.items() if v is not None}, key)


async def test_a_good_token_names_its_user_and_profile() -> None:
    assert await _verifier().authenticate(_token(warden_profile="ops")) == ("zoe", "ops")
    assert await _verifier(default_profile="base").authenticate(_token()) == ("zoe", "base")


@pytest.mark.parametrize(
    ("why", "token", "needle"),
    [
        ("expired", _token(exp=int(time.time()) - 120, warden_profile="ops"), "expired"),
        ("other issuer", _token(iss="https://evil.example", warden_profile="ops"), "iss"),
        ("other audience", _token(aud="https://elsewhere/mcp", warden_profile="ops"), "aud"),
        ("no user", _token(sub=None, warden_profile="ops"), "sub"),
        ("bad profile", _token(warden_profile="Not A Profile"), "profile"),
        ("no profile, no default", _token(), "profile"),
        ("signed by someone else", _token(OTHER, warden_profile="ops"), "not a valid JWT"),
        ("not a JWT", "abc", "Bearer"),
    ],
)
async def test_bad_tokens_are_refused_with_a_reason(why: str, token: str, needle: str) -> None:
    with pytest.raises(Unauthorized) as e:
        await _verifier().authenticate(token)
    assert needle in e.value.message, (why, e.value.message)


def test_an_http_issuer_is_refused_outside_development() -> None:
    with pytest.raises(ValueError, match="https"):
        JwtCallers(JwtCallerConfig(issuer="http://idp.example", audience=AUD))
