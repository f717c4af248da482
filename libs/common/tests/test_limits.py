"""The event size bound (pure logic): large values are replaced by a marker with their size
and SHA-256, small ones and the envelope are kept, and what cannot fit is said so."""

from __future__ import annotations

import hashlib

import orjson
import pytest
from warden_common.contracts import Actor, EventRefs, EventType, Service
from warden_common.contracts.events import Event, event_json
from warden_common.limits import bound_data, bound_event, check_limits


def test_a_large_string_becomes_a_marker_with_its_size_and_hash() -> None:
    big = "é" * 50_000
    out = bound_data({"arguments": {"blob": big, "n": 1}}, 1024)
    blob = out["arguments"]["blob"]
    assert blob["truncated"] is True
    assert blob["bytes"] == len(big.encode())
    assert blob["sha256"] == hashlib.sha256(big.encode()).hexdigest()
    assert blob["preview"] == big[:200]
    assert out["arguments"]["n"] == 1  # the small sibling is kept


def test_a_long_list_of_small_items_becomes_one_marker_of_its_json() -> None:
    items = [{"type": "text", "text": "x"} for _ in range(10_000)]
    out = bound_data({"result": {"content": items, "is_error": False}}, 4096)
    content = out["result"]["content"]
    assert content["truncated"] is True
    assert content["sha256"] == hashlib.sha256(orjson.dumps(items)).hexdigest()
    assert out["result"]["is_error"] is False


def test_small_events_pass_unchanged_and_large_ones_fit_the_limit() -> None:
    refs = EventRefs(tool="t", call_id="c" * 32)
    _, small = event_json(EventType.call_requested, Service.proxy, actor=None, refs=refs, data={"a": 1})
    assert bound_event(small, value_max=1024, event_max=8192) is small
    _, big = event_json(
        EventType.call_requested,
        Service.proxy,
        actor=Actor(kind="agent", id="k"),
        refs=refs,
        data={f"k{i}": "v" * 900 for i in range(100)},  # each under the value limit, all over the event's
    )
    out = bound_event(big, value_max=1024, event_max=8192)
    assert out is not None and len(out) <= 8192
    ev = Event.model_validate_json(out)
    assert ev.refs == refs and ev.data["truncated_data"]["bytes"] > 90_000


def test_an_event_whose_envelope_alone_is_too_large_cannot_be_bounded() -> None:
    _, payload = event_json(
        EventType.call_requested, Service.proxy, actor=None, refs=EventRefs(tool="t" * 20_000), data={}
    )
    assert bound_event(payload, value_max=1024, event_max=8192) is None


def test_limits_over_the_servers_max_payload_are_refused_naming_the_setting() -> None:
    with pytest.raises(ValueError, match="WARDEN_PROXY_NATS__MAX_MESSAGE_BYTES.*max_payload"):
        check_limits(
            server_max_payload=1 << 20,
            max_message_bytes=2 << 20,
            event_max_bytes=1 << 19,
            env_prefix="WARDEN_PROXY_",
            url="u",
        )
    with pytest.raises(ValueError, match="WARDEN_PROXY_NATS__EVENT_MAX_BYTES"):
        check_limits(
            server_max_payload=1 << 20,
            max_message_bytes=None,
            event_max_bytes=1 << 20,
            env_prefix="WARDEN_PROXY_",
            url="u",
        )
    assert (
        check_limits(
            server_max_payload=1 << 20, max_message_bytes=None, event_max_bytes=1 << 19, env_prefix="X_", url="u"
        )
        == (1 << 20) - 4096
    )
