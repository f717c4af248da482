"""The puller's protocol fast path (`_take`): pure logic on NATS protocol bytes."""

from __future__ import annotations

from warden_audit.puller import _take


def _msg(sid: int, data: bytes, reply: bytes = b"$JS.ACK.s.c.1.1.1.0.0", headers: bytes = b"") -> bytes:
    if headers:
        return b"HMSG in %d %b %d %d\r\n%b%b\r\n" % (sid, reply, len(headers), len(headers) + len(data), headers, data)
    return b"MSG in %d %b %d\r\n%b\r\n" % (sid, reply, len(data), data)


def _sinks(sid: int = 7) -> tuple[dict[int, object], list[tuple[bytes, bytes, bytes, bytes | None]]]:
    got: list[tuple[bytes, bytes, bytes, bytes | None]] = []
    return {sid: lambda s, r, d, h: got.append((s, r, d, h))}, got


def test_takes_messages_with_and_without_headers() -> None:
    sinks, got = _sinks()
    hdr = b"NATS/1.0\r\nNats-Msg-Id: x\r\n\r\n"
    buf = _msg(7, b'{"a":1}') + _msg(7, b'{"b":2}', headers=hdr) + _msg(7, b"")
    assert _take(buf, sinks) == len(buf)
    assert got == [
        (b"in", b"$JS.ACK.s.c.1.1.1.0.0", b'{"a":1}', None),
        (b"in", b"$JS.ACK.s.c.1.1.1.0.0", b'{"b":2}', hdr),
        (b"in", b"$JS.ACK.s.c.1.1.1.0.0", b"", None),
    ]


def test_payload_holding_protocol_bytes_is_data() -> None:
    sinks, got = _sinks()
    data = b"MSG in 7 9\r\nPING\r\n"
    buf = _msg(7, data)
    assert _take(buf, sinks) == len(buf)
    assert got[0][2] == data


def test_stops_at_partial_other_subscription_and_control_lines() -> None:
    one = _msg(7, b"first")
    for rest in (_msg(7, b"second")[:-3], _msg(7, b"second")[:9], _msg(8, b"other"), b"PING\r\n", b"+OK\r\n", b"MS"):
        sinks, got = _sinks()
        assert _take(one + rest, sinks) == len(one), rest
        assert [g[2] for g in got] == [b"first"]


def test_no_reply_and_malformed_lines_are_left_to_nats_py() -> None:
    sinks, got = _sinks()
    hdr = b"NATS/1.0 408 Request Timeout\r\n\r\n"
    status = b"HMSG in 7 %d %d\r\n%b\r\n" % (len(hdr), len(hdr), hdr)
    assert _take(status, sinks) == len(status)  # a status: no reply subject
    assert got[0][1] == b"" and got[0][3] is not None
    for bad in (b"MSG in x 1\r\na\r\n", b"HMSG in 7 9 3\r\nabc\r\n", b"MSG in\r\n", b"MSG a b c d e\r\n"):
        sinks, got = _sinks()
        assert _take(bad, sinks) == 0, bad
        assert got == []


async def test_any_split_of_the_stream_delivers_every_message_once_in_order() -> None:
    """In front of nats-py's own parser: messages split across reads anywhere, with a PING
    and another subscription's message between, all arrive once, in order."""
    from nats.protocol.parser import Parser
    from warden_audit.puller import _fast_parser

    class Client:
        def __init__(self) -> None:
            self.got: list[bytes] = []  # sid 7, by either path, in arrival order
            self.other: list[bytes] = []
            self.pings = 0

        async def _process_msg(self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: object) -> None:
            (self.got if sid == 7 else self.other).append(data)  # nats-py's path (audit hooks it too)

        async def _process_ping(self) -> None:
            self.pings += 1

    hdr = b"NATS/1.0\r\nNats-Msg-Id: x\r\n\r\n"
    parts = [_msg(7, b"m%d" % i, headers=hdr if i % 2 else b"") for i in range(40)]
    parts[10:10] = [b"PING\r\n", _msg(8, b"other")]
    stream = b"".join(parts)
    for step in (1, 2, 7, 33, 64, 1000):
        nc = Client()
        nc._ps = Parser(nc)
        _fast_parser(nc, {7: lambda s, r, d, h, nc=nc: nc.got.append(d)})
        for k in range(0, len(stream), step):
            await nc._ps.parse(stream[k : k + step])
        assert nc.got == [b"m%d" % i for i in range(40)], step
        assert nc.other == [b"other"]
        assert nc.pings == 1
