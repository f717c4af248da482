"""`event_json` encodes exactly the `Event` the model would build from the same parts (pure logic)."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from warden_common.contracts.events import REDACTED, Actor, Event, EventRefs, EventType, Service, event_json


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return rng.choice(["", "hi", "ünïcödé", "line\nbreak", 'quote"d', "\\", "emoji 🦀", "nul\x00l"])
    if kind == 1:
        return rng.randint(-(2**63), 2**63 - 1)
    if kind == 2:
        return rng.choice([0.0, -1.5, 3.14159, 1e-7, 1e300, float("inf"), float("nan")])
    if kind == 3:
        return rng.choice([True, False])
    if kind == 4:
        return None
    if kind == 5:
        return rng.randint(0, 10)
    if kind in (6, 7):
        keys = ["text", "content", "token", "api_key", "Authorization", "nested", "code", "items", "ok"]
        return {rng.choice(keys) + str(i % 2): _random_value(rng, depth + 1) for i in range(rng.randrange(4))}
    return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]


def _model_doc(raw: bytes) -> dict[str, Any]:
    """What a consumer gets: the event as the contract validates it, as JSON."""
    return json.loads(Event.model_validate_json(raw).model_dump_json())


@pytest.mark.parametrize("seed", range(300))
def test_event_json_is_the_events_json(seed: int) -> None:
    rng = random.Random(seed)
    actor = rng.choice([None, Actor(kind="agent", id="key_abc"), Actor(kind="service", id="billing")])
    refs = EventRefs(
        tool=rng.choice([None, "notion__search"]),
        profile=rng.choice([None, "demo"]),
        call_id=rng.choice([None, "c" * 32]),
        user=rng.choice([None, "alice"]),
        connector=rng.choice([None, "notion"]),
    )
    etype = rng.choice(list(EventType))
    status = rng.choice([None, "ok", "error", "requested", "x" * 40])
    latency = rng.choice([None, 0.0, 1.25, 1234.5678])
    data = {"arguments": _random_value(rng), "result": _random_value(rng)} if rng.random() < 0.9 else None
    trace = rng.choice([None, "0af7651916cd43dd8448eb211c80319c"])
    before = datetime.now(UTC)
    try:
        eid, raw = event_json(
            etype, Service.proxy, actor=actor, refs=refs, status=status, latency_ms=latency, data=data, trace_id=trace
        )
    except TypeError:  # orjson refuses it (an integer past 64 bits never comes here): the model path
        pytest.skip("not encodable by the fast path")
    got = _model_doc(raw)
    want = json.loads(
        Event(
            id=eid,
            time=datetime.fromisoformat(got["time"]),
            type=etype,
            source=Service.proxy,
            actor=actor,
            refs=refs,
            status=status,
            latency_ms=latency,
            data=data or {},
            trace_id=trace,
        ).model_dump_json()
    )
    assert got == want
    assert timedelta(0) <= datetime.fromisoformat(got["time"]) - before < timedelta(seconds=5)
    assert json.loads(raw)["id"] == eid and len(eid) == 32


def test_event_json_scrubs_secret_keys_at_any_depth() -> None:
    _, raw = event_json(
        EventType.call_completed,
        Service.proxy,
        actor=None,
        refs=EventRefs(),
        data={"result": {"content": [{"access_token": "tok-123", "nested": {"password": "p"}}]}},
    )
    assert b"tok-123" not in raw and b'"p"' not in raw
    doc = json.loads(raw)
    assert doc["data"]["result"]["content"][0]["access_token"] == REDACTED
    assert doc["data"]["result"]["content"][0]["nested"]["password"] == REDACTED


@pytest.mark.parametrize(
    "kw",
    [
        {"type": "call.made_up"},  # not one of EventType: the model decides
        {"status": "x" * 41},
        {"trace_id": "t" * 65},
        {"latency_ms": "12"},
        {"refs": {"tool": "t"}},
        {"actor": {"kind": "agent", "id": "a"}},
    ],
)
def test_event_json_refuses_what_it_cannot_prove(kw: dict[str, Any]) -> None:
    args: dict[str, Any] = {"actor": None, "refs": EventRefs(), **kw}
    etype = args.pop("type", EventType.call_requested)
    with pytest.raises((TypeError, ValueError)):
        event_json(etype, Service.proxy, **args)


@pytest.mark.parametrize("depth", [5, 19, 20, 21, 30])
def test_event_json_cuts_deep_payloads_as_the_model_does(depth: int) -> None:
    data: dict[str, Any] = {"leaf": "x"}
    for i in range(depth):
        data = {f"l{i}": data} if i % 2 else {f"l{i}": [data]}
    eid, raw = event_json(EventType.call_completed, Service.proxy, actor=None, refs=EventRefs(), data=data)
    got = _model_doc(raw)
    want = json.loads(
        Event(id=eid, time=datetime.fromisoformat(got["time"]), type=EventType.call_completed,
              source=Service.proxy, data=data).model_dump_json()
    )  # fmt: skip
    assert got == want


@pytest.mark.parametrize(
    "key",
    ["token", "secret", "password", "passwd", "authorization", "api_key", "api-key", "apikey", "cookie",
     "credential", "private_key", "privatekey", "code_verifier", "code", "assertion", "jwt", "X-Api-Key",
     "ACCESS_TOKEN", "Set-Cookie"],
)  # fmt: skip
def test_event_json_scrubs_every_kind_of_secret_key(key: str) -> None:
    """Every alternative of the contract's secret-key pattern, in any case, at depth 3."""
    _, raw = event_json(
        EventType.call_completed, Service.proxy, actor=None, refs=EventRefs(), data={"result": {"x": [{key: "v4lue"}]}}
    )
    assert b"v4lue" not in raw
    assert json.loads(raw)["data"]["result"]["x"][0][key] == REDACTED
