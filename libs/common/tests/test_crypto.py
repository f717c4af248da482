import os

import pytest
from warden_common.crypto import Sealer
from warden_common.errors import SealError
from warden_common.settings import CryptoSettings


def _sealer(*kids: str) -> Sealer:
    return Sealer([(k, os.urandom(32)) for k in kids])


def test_seal_then_open_returns_the_plaintext():
    s = _sealer("k1")
    blob = s.seal(b"refresh-token-value", "connectors/token/a/u1")
    assert b"refresh-token-value" not in blob
    assert s.open(blob, "connectors/token/a/u1") == b"refresh-token-value"


def test_each_record_gets_its_own_data_key():
    s = _sealer("k1")
    assert s.seal(b"same", "r") != s.seal(b"same", "r")


def test_a_ciphertext_moved_to_another_record_does_not_open():
    s = _sealer("k1")
    blob = s.seal(b"user1-token", "connectors/token/a/user1")
    with pytest.raises(SealError):
        s.open(blob, "connectors/token/a/user2")


@pytest.mark.parametrize("offset", [5, 20, 70, -1])
def test_a_tampered_ciphertext_raises_and_never_returns_the_input(offset):
    s = _sealer("k1")
    blob = bytearray(s.seal(b"secret", "r"))
    blob[offset] ^= 0x01
    with pytest.raises(SealError):
        s.open(bytes(blob), "r")


def test_garbage_and_truncated_input_raise():
    s = _sealer("k1")
    for junk in (b"", b"plaintext", b"WS1", s.seal(b"x", "r")[:30]):
        with pytest.raises(SealError):
            s.open(junk, "r")


def test_unknown_key_id_raises():
    blob = _sealer("old").seal(b"x", "r")
    with pytest.raises(SealError, match="not configured"):
        _sealer("new").open(blob, "r")


def test_rotation_rewraps_under_the_active_key():
    k_old, k_new = os.urandom(32), os.urandom(32)
    before = Sealer([("old", k_old)])
    blob = before.seal(b"token", "r")
    after = Sealer([("new", k_new), ("old", k_old)])
    rewrapped = after.rewrap(blob, "r")
    assert after.key_id(rewrapped) == "new"
    assert Sealer([("new", k_new)]).open(rewrapped, "r") == b"token"


def test_keys_come_from_settings_and_there_is_no_default():
    with pytest.raises(ValueError, match="no key-encryption key"):
        CryptoSettings().load()
    with pytest.raises(ValueError, match="32 bytes"):
        CryptoSettings(keys="k1:AAAA").load()
