"""The one-pass parser: whatever it takes the fast way, it reads and stores exactly as the
contract's model (the slow way) would; whatever it cannot prove, it leaves to the model."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

from audit_support import Audit, wait_for
from warden_audit.parse import Parser
from warden_audit.redaction import Redactor
from warden_audit.settings import RedactionRule
from warden_common.bus import Bus

RULES = [
    RedactionRule(tools="red__*", fields={"email": "hash", "body": "drop"}),
    RedactionRule(tools="gone__*", drop_all=True),
]


@dataclass
class Msg:
    data: bytes
    subject: str = "t.v1.events.proxy.x"


def envelope(**kw: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "id": f"e{random.getrandbits(60):015x}",
        "type": "call.completed",
        "source": "proxy",
        "time": "2026-11-23T10:51:13.123456Z",
    }
    ev.update(kw)
    return ev


def random_value(rng: random.Random, depth: int = 0) -> Any:
    pick = rng.randrange(12 if depth < 4 else 8)
    if pick == 0:
        return rng.choice([0.1, -0.0, 1e16, 1.5e-9, 12.5, 1e22, 9999999999999998.0, 5.0, -3.25e-7])
    if pick == 1:
        return rng.choice([0, -1, 2**53 + 1, 2**63, 2**64 - 1, 2**64, -(2**63) - 1, 10**30])
    if pick == 2:
        return rng.uniform(-1e6, 1e6)
    if pick == 3:
        return rng.choice(["plain", "héllo ✓", "tab\there", 'quote"s', "a\x00b", "\u2028", "ſecret", ""])
    if pick == 4:
        return rng.choice([True, False, None])
    if pick in (5, 6, 7):
        return rng.randrange(-1000, 1000)
    if pick in (8, 9):
        keys = ["a", "b", "token", "Code", "code", "apiKey", "ſecret", "nested", "email", "body", "é"]
        return {rng.choice(keys): random_value(rng, depth + 1) for _ in range(rng.randrange(4))}
    return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]


def raw_variants(ev: dict[str, Any], rng: random.Random) -> list[bytes]:
    """The same event written a few ways (compact, spaced, escaped, exponent numbers)."""
    out = [json.dumps(ev).encode(), json.dumps(ev, ensure_ascii=False, separators=(",", ":")).encode()]
    out.append(json.dumps(ev, indent=1).encode())
    text = json.dumps(ev, ensure_ascii=False)
    out.append(text.replace(": 12", ": 1.2e1").encode())
    return out


def test_the_fast_way_reads_and_stores_exactly_as_the_model_does() -> None:
    rng = random.Random(7)
    parser = Parser(Redactor(RULES), data_cap=2048)
    fast = 0
    for i in range(3000):
        tool = rng.choice([None, "notion__search", "red__x", "gone__y", "tok__z"])
        ev = envelope(
            refs={"tool": tool, "call_id": f"c{i}"} if tool else {},
            status=rng.choice([None, "ok", "error"]),
            latency_ms=rng.choice([None, 12, 12.5, -0.0, 1e22]),
            actor=rng.choice([None, {"kind": "agent", "id": "a1"}]),
            trace_id=rng.choice([None, "abc"]),
            data={"arguments": random_value(rng), "result": random_value(rng), "x": random_value(rng)},
        )
        if rng.random() < 0.2:
            ev["data"]["big"] = "y" * 3000  # past the cap
        for raw in raw_variants(ev, rng):
            slow = parser._slow(raw)
            got = parser._fast(raw)
            if got is None:
                continue
            fast += 1
            assert not isinstance(slow, str), (raw, slow)
            assert got[0] == slow[0], raw
            assert got[1] == slow[1], raw
    assert fast > 3000  # most take the fast way


def test_what_the_fast_way_cannot_prove_goes_to_the_model() -> None:
    parser = Parser(Redactor([]), data_cap=4096)
    cases = [
        envelope(data={"x": "a\u0000b"}),  # NUL (a \u escape)
        envelope(data={"x": 1e22}),  # an exponent
        envelope(data={"x": -0.0}),
        envelope(data={"x": 2**70}),  # past 64 bits
        {k: v for k, v in envelope().items() if k != "id"},  # the model makes an id
        {k: v for k, v in envelope().items() if k != "time"},
        envelope(time="2026-11-23 10:51:13"),
        envelope(latency_ms="12"),  # the model reads a numeric string
        envelope(actor={"kind": "robot", "id": "x"}),
        envelope(refs=None),
        envelope(data=None),
    ]
    for ev in cases:
        raw = json.dumps(ev).encode()
        assert parser._fast(raw) is None, ev
    batch = parser.parse([Msg(json.dumps(ev).encode()) for ev in cases])
    reasons = sorted(d.reason for d in batch.dead)
    assert len(batch.rows) == 8 and len(reasons) == 3, reasons
    assert all(r.startswith("not a valid event: ") for r in reasons)
    row = batch.rows[0]
    assert json.loads(row[16]) == {"x": "a\ufffdb"}
    assert batch.rows[1][16] == b'{"x":10000000000000000000000}'


def test_an_event_from_a_newer_replica_with_unknown_fields_is_stored_the_same_both_ways() -> None:
    """Contracts grow by optional fields: an envelope (or its refs / actor) with a field this
    replica does not know is stored, without that field, exactly as the model would store it."""
    parser = Parser(Redactor([]), data_cap=4096)
    ev = envelope(extra=1, refs={"tool": "a__b", "connector_id": "c-1"}, actor={"kind": "admin", "id": "x", "via": "y"})
    raw = json.dumps(ev).encode()
    fast = parser._fast(raw)
    assert fast is not None
    slow = parser._slow(raw)
    assert not isinstance(slow, str), slow
    assert fast[0] == slow[0] and fast[0][9] == "a__b"


def test_secret_keys_are_scrubbed_on_the_fast_way() -> None:
    parser = Parser(Redactor([]), data_cap=4096)
    ev = envelope(data={"args": {"API_KEY": "s1", "list": [{"Code": "s2"}], "ſecret": "s3", "fine": 1}})
    (row,) = parser.parse([Msg(json.dumps(ev, ensure_ascii=False).encode())]).rows
    assert b"s1" not in row[16] and b"s2" not in row[16] and b"s3" not in row[16]
    assert json.loads(row[16])["args"]["fine"] == 1
    assert parser.slow == 0


async def test_numbers_written_any_way_keep_the_chain_verifiable(audit: Audit, bus: Bus, tag: str) -> None:
    numbers = ["0.1", "-0", "-0.0", "1E5", "1e-7", "1.5e-9", "12345678901234567", "123456789012345678901234567890",
               "18446744073709551615", "-9223372036854775809", "1e16", "9999999999999998.0", "1e308", "5e-324",
               "0.30000000000000004", "100.0"]  # fmt: skip
    js = bus.nc.jetstream()
    for i, n in enumerate(numbers):
        raw = (
            f'{{"id":"num-{tag}-{i:03d}","type":"custom.numbers","source":"proxy",'
            f'"time":"2026-11-23T10:51:13.5+02:00","refs":{{"tool":"num_{tag}"}},"data":{{"n":{n},"l":[{n}]}}}}'
        )
        await js.publish(f"{audit.root}.v1.events.proxy.custom.numbers", raw.encode())

    async def stored() -> bool:
        rows = await audit.sql("SELECT count(*) FROM events WHERE tool = $1", f"num_{tag}")
        return rows[0][0] == len(numbers)

    await wait_for(stored, what="the number events")
    async with audit.client() as c:
        rep = (await c.post("/v1/verify")).json()
    assert rep["ok"], rep
