"""The `state` of an authorization request: encrypted, bound, expiring, single use.

The state is AES-256-GCM over a small JSON document (key derived with HKDF from the key the
service passes in), so it is both confidential and tamper-evident. It carries the PKCE verifier,
the connector id, the person who started the flow, the issuer and redirect URI it was made for,
and a random nonce. Binding the verifier inside the state means a code can only be redeemed
with the verifier of the very flow that asked for it.

- `peek()` checks integrity and expiry and tells the callback which connector it is for.
- `consume()` also checks the person and burns the nonce in a `NonceStore`: a state works once.

`NonceStore` is a protocol the service implements over its database (INSERT ... ON CONFLICT DO
NOTHING); `InMemoryNonceStore` is for tests and single-process use.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from .errors import StateExpired, StateInvalid, StateReplayed, StateUserMismatch

__all__ = ["STATE_TTL_S", "FlowState", "InMemoryNonceStore", "NonceStore", "StateCodec"]

STATE_TTL_S = 600
_PREFIX = "w1."
_AAD = b"warden.connectors.oauth.state.v1"
_MAX_STATE_CHARS = 4096


class NonceStore(Protocol):
    async def consume(self, nonce: str, expires_at: float) -> bool:
        """Record `nonce` as used; True the first time, False on every later call.
        May forget it after `expires_at` (the state is refused as expired by then anyway)."""
        ...


class InMemoryNonceStore:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._used: dict[str, float] = {}
        self._clock = clock

    async def consume(self, nonce: str, expires_at: float) -> bool:
        now = self._clock()
        for n in [n for n, exp in self._used.items() if exp < now]:
            del self._used[n]
        if nonce in self._used:
            return False
        self._used[nonce] = expires_at
        return True


class FlowState(BaseModel):
    """What a state carries. The verifier is a SecretStr: it never shows in a repr or a log."""

    model_config = ConfigDict(frozen=True)

    nonce: str
    connector_id: str
    user: str
    verifier: SecretStr
    issuer: str
    redirect_uri: str
    scopes: tuple[str, ...] = ()
    resource: str | None = None
    issued_at: float
    expires_at: float


def _binding_key(key: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"warden oauth consent binding v1").derive(key)


def _derive(key: bytes) -> AESGCM:
    if len(key) < 32:
        raise ValueError("the state key must be at least 32 bytes")
    k = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"warden oauth state v1").derive(key)
    return AESGCM(k)


class StateCodec:
    def __init__(
        self,
        key: bytes,
        store: NonceStore,
        *,
        ttl_s: float = STATE_TTL_S,
        old_keys: Sequence[bytes] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._aead = _derive(key)
        self._openers = [self._aead, *(_derive(k) for k in old_keys)]  # rotation: old keys only open
        self._binders = [_binding_key(key), *(_binding_key(k) for k in old_keys)]
        self._store = store
        self.ttl_s = ttl_s
        self._clock = clock

    def seal(
        self,
        *,
        connector_id: str,
        user: str,
        verifier: str,
        issuer: str,
        redirect_uri: str,
        scopes: Sequence[str] = (),
        resource: str | None = None,
    ) -> tuple[str, FlowState]:
        now = float(int(self._clock()))  # whole seconds: what the sealed document carries
        fs = FlowState(
            nonce=secrets.token_urlsafe(16),
            connector_id=connector_id,
            user=user,
            verifier=SecretStr(verifier),
            issuer=issuer,
            redirect_uri=redirect_uri,
            scopes=tuple(scopes),
            resource=resource,
            issued_at=now,
            expires_at=float(int(now + self.ttl_s)),
        )
        doc = {
            "n": fs.nonce,
            "c": fs.connector_id,
            "u": fs.user,
            "v": verifier,
            "i": fs.issuer,
            "r": fs.redirect_uri,
            "s": " ".join(fs.scopes),
            "x": fs.resource,
            "t": int(now),
            "e": int(fs.expires_at),
        }
        iv = secrets.token_bytes(12)
        ct = self._aead.encrypt(iv, json.dumps(doc, separators=(",", ":")).encode(), _AAD)
        token = _PREFIX + base64.urlsafe_b64encode(iv + ct).rstrip(b"=").decode()
        return token, fs

    def binding(self, nonce: str, user: str) -> str:
        """The browser binding of a flow: an HMAC of its nonce and person, which the start URL
        sets as a cookie in the browser that opened it and the callback asks back."""
        return self._mac(self._binders[0], nonce, user)

    def binding_ok(self, value: str | None, nonce: str, user: str) -> bool:
        if not value or not isinstance(value, str) or len(value) > 128:
            return False
        return any(hmac.compare_digest(value, self._mac(k, nonce, user)) for k in self._binders)

    @staticmethod
    def _mac(key: bytes, nonce: str, user: str) -> str:
        msg = json.dumps([nonce, user], separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(hmac.digest(key, msg, "sha256")).rstrip(b"=").decode()

    def peek(self, state: str | None) -> FlowState:
        """Open and check a state without consuming it. Raises StateInvalid / StateExpired."""
        if not state or not isinstance(state, str) or len(state) > _MAX_STATE_CHARS or not state.startswith(_PREFIX):
            raise StateInvalid("the consent link is not valid (unknown or damaged state); start the connection again")
        try:
            raw = base64.urlsafe_b64decode(state[len(_PREFIX) :] + "=" * (-len(state) % 4))
        except (binascii.Error, ValueError):
            raise StateInvalid("the consent link is not valid (damaged state); start the connection again") from None
        if len(raw) < 12 + 16:
            raise StateInvalid("the consent link is not valid (damaged state); start the connection again")
        plain = None
        for aead in self._openers:
            try:
                plain = aead.decrypt(raw[:12], raw[12:], _AAD)
                break
            except InvalidTag:
                continue
        if plain is None:
            raise StateInvalid(
                "the consent link is not valid (forged or for another Warden); start the connection again"
            )
        try:
            d = json.loads(plain)
            fs = FlowState(
                nonce=d["n"],
                connector_id=d["c"],
                user=d["u"],
                verifier=SecretStr(d["v"]),
                issuer=d["i"],
                redirect_uri=d["r"],
                scopes=tuple(d["s"].split()),
                resource=d["x"],
                issued_at=float(d["t"]),
                expires_at=float(d["e"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError, ValidationError):
            raise StateInvalid("the consent link is not valid (unreadable state); start the connection again") from None
        if self._clock() >= fs.expires_at:
            raise StateExpired(
                f"the consent link expired (it is valid for {_minutes(self.ttl_s)}); start the connection again",
                details={"connector_id": fs.connector_id},
            )
        return fs

    async def consume(self, state: str | None, *, user: str, connector_id: str | None = None) -> FlowState:
        """Open, check the person (and connector), and burn the nonce. Works once per state."""
        fs = self.peek(state)
        if fs.user != user:
            raise StateUserMismatch(
                "this consent was started by someone else; sign in as that person or start again",
                details={"connector_id": fs.connector_id},
            )
        if connector_id is not None and fs.connector_id != connector_id:
            raise StateInvalid("the consent link is for another connector", details={"connector_id": connector_id})
        if not await self._store.consume(fs.nonce, fs.expires_at):
            raise StateReplayed(
                "this consent link was already used; start the connection again",
                details={"connector_id": fs.connector_id},
            )
        return fs


def _minutes(seconds: float) -> str:
    m = round(seconds / 60)
    return "1 minute" if m == 1 else f"{m} minutes"
