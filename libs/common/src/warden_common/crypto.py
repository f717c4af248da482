"""Envelope encryption for secrets at rest.

Each record gets a fresh random 256-bit data key; the data is sealed with AES-256-GCM
under it, and the data key is wrapped (AES-256-GCM) by a key-encryption key (KEK) that
has an id. The record's identity (e.g. `connectors/token/<connector>/<user>`) is bound
in as associated data, so a ciphertext copied to another record does not open.
Rotation: `rewrap` re-wraps the data key under the active KEK without touching the data.

Wire format (bytes):  b"WS1" | len(kid) (1 byte) | kid | wrap_nonce (12) |
                      wrapped_dek (32+16) | data_nonce (12) | ciphertext+tag
Failure to open always raises `SealError`; it never returns None or the input.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from warden_common.errors import SealError

__all__ = ["Sealer"]

_MAGIC = b"WS1"
_WRAPPED_LEN = 32 + 16


class Sealer:
    def __init__(self, keys: list[tuple[str, bytes]]) -> None:
        if not keys:
            raise ValueError("Sealer needs at least one key-encryption key")
        for kid, key in keys:
            if len(key) != 32 or not (0 < len(kid.encode()) < 256):
                raise ValueError("each KEK must be 32 bytes with a 1..255 byte id")
        self._active_kid = keys[0][0]
        self._keks = {kid: AESGCM(key) for kid, key in keys}

    @property
    def active_kid(self) -> str:
        return self._active_kid

    @property
    def key_ids(self) -> list[str]:
        """Every configured key id, the active one first."""
        return list(self._keks)

    @staticmethod
    def _wrap_aad(kid: bytes, aad: bytes) -> bytes:
        return b"warden-dek|" + kid + b"|" + aad

    def seal(self, plaintext: bytes, aad: str) -> bytes:
        a = aad.encode()
        kid = self._active_kid.encode()
        dek = AESGCM.generate_key(bit_length=256)
        wrap_nonce, data_nonce = os.urandom(12), os.urandom(12)
        wrapped = self._keks[self._active_kid].encrypt(wrap_nonce, dek, self._wrap_aad(kid, a))
        ct = AESGCM(dek).encrypt(data_nonce, plaintext, a)
        return _MAGIC + bytes([len(kid)]) + kid + wrap_nonce + wrapped + data_nonce + ct

    def _parse(self, blob: bytes) -> tuple[str, bytes, bytes, bytes, bytes]:
        if len(blob) < 4 or blob[:3] != _MAGIC:
            raise SealError("sealed value has an unknown format")
        n = blob[3]
        head = 4 + n
        if len(blob) < head + 12 + _WRAPPED_LEN + 12 + 16:
            raise SealError("sealed value is truncated")
        kid = blob[4:head].decode(errors="replace")
        wrap_nonce = blob[head : head + 12]
        wrapped = blob[head + 12 : head + 12 + _WRAPPED_LEN]
        rest = blob[head + 12 + _WRAPPED_LEN :]
        return kid, wrap_nonce, wrapped, rest[:12], rest[12:]

    def _unwrap(self, kid: str, wrap_nonce: bytes, wrapped: bytes, a: bytes) -> bytes:
        kek = self._keks.get(kid)
        if kek is None:
            raise SealError(f"sealed under key id {kid!r}, which is not configured")
        try:
            return kek.decrypt(wrap_nonce, wrapped, self._wrap_aad(kid.encode(), a))
        except InvalidTag:
            raise SealError("sealed value failed authentication (tampered, or bound to another record)") from None

    def open(self, blob: bytes, aad: str) -> bytes:
        a = aad.encode()
        kid, wrap_nonce, wrapped, data_nonce, ct = self._parse(blob)
        dek = self._unwrap(kid, wrap_nonce, wrapped, a)
        try:
            return AESGCM(dek).decrypt(data_nonce, ct, a)
        except InvalidTag:
            raise SealError("sealed value failed authentication (tampered, or bound to another record)") from None

    def key_id(self, blob: bytes) -> str:
        return self._parse(blob)[0]

    def rewrap(self, blob: bytes, aad: str) -> bytes:
        """Re-wrap the data key under the active KEK; the data itself is not re-encrypted."""
        a = aad.encode()
        kid, wrap_nonce, wrapped, data_nonce, ct = self._parse(blob)
        dek = self._unwrap(kid, wrap_nonce, wrapped, a)
        new_kid = self._active_kid.encode()
        new_nonce = os.urandom(12)
        new_wrapped = self._keks[self._active_kid].encrypt(new_nonce, dek, self._wrap_aad(new_kid, a))
        return _MAGIC + bytes([len(new_kid)]) + new_kid + new_nonce + new_wrapped + data_nonce + ct
