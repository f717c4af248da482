"""The browser binding of a person's consent (pure logic, issue 16 10d): the cookie value is an
HMAC of the flow's nonce and person under the state key; it checks only for that nonce, that
person and that key (or an older key after a rotation), and refuses anything else."""

from __future__ import annotations

import os

from warden_connectors.oauth import InMemoryNonceStore, StateCodec

KEY, OTHER = os.urandom(32), os.urandom(32)


def _codec(key: bytes, old: tuple[bytes, ...] = ()) -> StateCodec:
    return StateCodec(key, InMemoryNonceStore(), old_keys=old)


def test_a_binding_checks_only_for_its_nonce_person_and_key() -> None:
    codec = _codec(KEY)
    value = codec.binding("n" * 22, "alice")
    assert codec.binding_ok(value, "n" * 22, "alice")
    assert not codec.binding_ok(value, "m" * 22, "alice")  # another flow
    assert not codec.binding_ok(value, "n" * 22, "mallory")  # another person
    assert not _codec(OTHER).binding_ok(value, "n" * 22, "alice")  # another Warden
    for bad in (None, "", "x" * 500, value[:-1]):
        assert not codec.binding_ok(bad, "n" * 22, "alice")
    # no ambiguity between (nonce, person) pairs that concatenate alike
    assert codec.binding("ab", "c") != codec.binding("a", "bc")


def test_a_binding_set_before_a_key_rotation_still_checks_after_it() -> None:
    value = _codec(OTHER).binding("n" * 22, "alice")
    assert _codec(KEY, (OTHER,)).binding_ok(value, "n" * 22, "alice")
    assert _codec(KEY, (OTHER,)).binding("n" * 22, "alice") != value  # new ones use the new key
