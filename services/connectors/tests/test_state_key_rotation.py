"""KEK rotation and consent links in flight (pure logic): a state sealed under the old KEK still
opens after the new KEK is put first; a state of a KEK that was dropped does not."""

from __future__ import annotations

import os

import pytest
from warden_connectors.app import state_key, state_old_keys
from warden_connectors.oauth import InMemoryNonceStore, StateCodec, StateInvalid
from warden_connectors.settings import Settings

OLD = ("k1", os.urandom(32))
NEW = ("k2", os.urandom(32))


def _codec(keys: list[tuple[str, bytes]]) -> StateCodec:
    settings = Settings.model_construct(state_key=None)
    return StateCodec(state_key(settings, keys), InMemoryNonceStore(), old_keys=state_old_keys(settings, keys))


def _seal(codec: StateCodec) -> str:
    state, _ = codec.seal(
        connector_id="c1", user="alice", verifier="v" * 43, issuer="https://as.example", redirect_uri="https://w/cb"
    )
    return state


async def test_a_consent_started_before_a_kek_rotation_completes_after_it() -> None:
    before = _seal(_codec([OLD]))
    rotated = _codec([NEW, OLD])
    flow = await rotated.consume(before, user="alice", connector_id="c1")
    assert flow.user == "alice" and flow.connector_id == "c1"
    # new links are sealed with the new key: a replica still on the old keys cannot open them
    with pytest.raises(StateInvalid):
        _codec([OLD]).peek(_seal(rotated))


def test_a_state_of_a_retired_kek_is_refused() -> None:
    before = _seal(_codec([OLD]))
    with pytest.raises(StateInvalid):
        _codec([NEW]).peek(before)
