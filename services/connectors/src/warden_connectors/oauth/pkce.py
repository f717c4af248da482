"""PKCE (RFC 7636), S256 only: OAuth 2.1 and the MCP authorization spec forbid `plain`."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets

__all__ = ["challenge_s256", "new_verifier"]

_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")


def new_verifier(nbytes: int = 48) -> str:
    """A fresh code verifier: 64 unreserved characters (384 bits) by default."""
    v = secrets.token_urlsafe(nbytes)
    if not _VERIFIER.match(v):  # token_urlsafe only yields [A-Za-z0-9_-]; guard the length bounds
        raise ValueError("verifier length must be 43..128 characters")
    return v


def challenge_s256(verifier: str) -> str:
    if not _VERIFIER.match(verifier):
        raise ValueError("not a valid PKCE code verifier")
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
