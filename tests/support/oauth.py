"""Helpers for OAuth client tests: a browser stand-in and pre-registered client definitions."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

__all__ = ["REDIRECT_URI", "follow_consent", "registered_clients"]

# Warden's callback as the provider sees it; nothing listens there: the browser stand-in stops
# at the redirect and hands the query to the code under test.
REDIRECT_URI = "http://127.0.0.1:9/connect/callback"


def registered_clients(redirect_uri: str = REDIRECT_URI) -> list[dict[str, Any]]:
    """One pre-registered client per token endpoint auth method."""
    base = {"redirect_uris": [redirect_uri], "grant_types": ["authorization_code", "refresh_token"]}
    return [
        {**base, "client_id": "reg-post", "client_secret": "reg-post-secret-0123456789",
         "token_endpoint_auth_method": "client_secret_post"},
        {**base, "client_id": "reg-basic", "client_secret": "reg-basic-secret-0123456789",
         "token_endpoint_auth_method": "client_secret_basic"},
        {**base, "client_id": "reg-public", "token_endpoint_auth_method": "none"},
    ]  # fmt: skip


async def follow_consent(url: str, redirect_uri: str = REDIRECT_URI, max_hops: int = 12) -> dict[str, str]:
    """Play the browser: follow the provider's redirects (login, consent) until it sends us to
    `redirect_uri`; return that redirect's query parameters."""
    async with httpx.AsyncClient(timeout=10, trust_env=False, follow_redirects=False) as browser:
        async with asyncio.timeout(30):
            current = url
            for _ in range(max_hops):
                r = await browser.get(current)
                if r.status_code not in (302, 303, 307):
                    body = r.text
                    at = body.find("<pre>") if "<pre>" in body else body.find("<body")
                    raise AssertionError(f"provider answered {r.status_code} at {current}: {body[max(at, 0) :][:1500]}")
                location = str(r.url.join(r.headers["location"]))
                if location.startswith(redirect_uri):
                    return dict(parse_qsl(urlsplit(location).query))
                current = location
    raise AssertionError(f"no redirect to {redirect_uri} after {max_hops} hops")
