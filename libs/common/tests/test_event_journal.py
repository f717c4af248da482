"""Events still in the outbox of a process that is killed are not lost (issue 14: the drill's
SIGKILLed proxy lost the events of its call in flight): the outbox's journal on disk keeps them,
and the next process of that service on the same directory — a restart, or a replica already
running beside it — publishes them, each stored once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import nats
from nats.js.api import AckPolicy, ConsumerConfig
from support.infra import unique_root
from warden_common.bus import Bus
from warden_common.contracts import EventRefs, EventType, Service
from warden_common.journal import EventJournal, read_records
from warden_common.settings import NatsSettings

N = 25

# A service process that emits N events its stream cannot store yet (the stream does not
# exist: every publish goes unanswered and is retried), says so, and waits to be killed.
_DOOMED = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from warden_common.bus import Bus
    from warden_common.contracts import EventRefs, EventType, Service
    from warden_common.settings import NatsSettings

    async def main() -> None:
        url, root, jdir, n = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
        bus = Bus(NatsSettings(url=url, root=root, event_journal_dir=jdir), Service.proxy)
        await bus.connect()
        for i in range(n):
            bus.emit_event(EventType.call_requested, actor=None, refs=EventRefs(call_id=f"doomed-{i}"))
        await asyncio.sleep(0.3)  # the publisher has tried: the events are in flight, unacknowledged
        assert bus.outbox_depth == n, bus.outbox_depth
        print("emitted", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


def _emit_then_die(nats_url: str, root: str, jdir: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _DOOMED, nats_url, root, str(jdir), str(N)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "emitted", proc.stderr.read() if proc.stderr else line
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()


async def _stored_ids(nats_url: str, stream: str, root: str, want: int) -> list[str]:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        sub = await js.pull_subscribe(
            f"{root}.v1.events.>", stream=stream, config=ConsumerConfig(ack_policy=AckPolicy.NONE)
        )
        ids: list[str] = []
        async with asyncio.timeout(30):
            while len(ids) < want:
                try:
                    ids += [m.headers["Nats-Msg-Id"] for m in await sub.fetch(100, timeout=1) if m.headers]
                except nats.errors.TimeoutError:
                    continue
        await asyncio.sleep(0.5)  # nothing more (a second copy would show up here)
        info = await js.stream_info(stream)
        assert info.state.messages == want, info.state
        return ids
    finally:
        await nc.close()


async def _make_stream(nats_url: str, root: str) -> str:
    bus = Bus(NatsSettings(url=nats_url, root=root), Service.audit)
    await bus.connect()
    try:
        await bus.ensure_events_stream()
        return bus.events_stream
    finally:
        await bus.close()


async def test_a_killed_process_s_events_are_published_by_its_next_start(nats_url: str, tmp_path: Path) -> None:
    root, jdir = unique_root(), tmp_path / "events"
    _emit_then_die(nats_url, root, jdir)
    (left,) = list(jdir.glob("proxy-*.journal"))
    assert len(read_records(left)) == N
    assert left.stat().st_mode & 0o777 == 0o600 and jdir.stat().st_mode & 0o777 == 0o700
    stream = await _make_stream(nats_url, root)

    again = Bus(NatsSettings(url=nats_url, root=root, event_journal_dir=jdir), Service.proxy)
    await again.connect()
    try:
        ids = await _stored_ids(nats_url, stream, root, N)
        assert len(set(ids)) == N
        async with asyncio.timeout(10):
            await again._outbox.join()
        assert not left.exists()  # adopted, published, removed
        assert [p.name for p in jdir.glob("*.journal")] == [
            p.name for p in jdir.glob(f"proxy-{again._journal.token}-*")
        ]  # type: ignore[union-attr]
    finally:
        await again.close()
    assert list(jdir.glob("*.journal")) == []  # a clean stop with nothing waiting leaves nothing


async def test_a_replica_already_running_publishes_a_dead_replica_s_events(nats_url: str, tmp_path: Path) -> None:
    root, jdir = unique_root(), tmp_path / "events"
    alive = Bus(NatsSettings(url=nats_url, root=root, event_journal_dir=jdir, event_journal_scan_s=0.2), Service.proxy)
    await alive.connect()
    try:
        _emit_then_die(nats_url, root, jdir)  # the other replica, on the same directory
        stream = await _make_stream(nats_url, root)
        ids = await _stored_ids(nats_url, stream, root, N)
        assert len(set(ids)) == N
    finally:
        await alive.close()


async def test_a_clean_stop_that_cannot_store_its_events_keeps_them_for_the_next_start(
    nats_url: str, tmp_path: Path
) -> None:
    root, jdir = unique_root(), tmp_path / "events"
    first = Bus(NatsSettings(url=nats_url, root=root, event_journal_dir=jdir), Service.registry)
    await first.connect()
    for i in range(3):
        first.emit_event(EventType.tool_registered, actor=None, refs=EventRefs(tool=f"t{i}"))
    await first.close()  # no stream: gives up after 5 s, the events stay in the journal
    assert sum(len(read_records(p)) for p in jdir.glob("registry-*.journal")) == 3
    stream = await _make_stream(nats_url, root)
    second = Bus(NatsSettings(url=nats_url, root=root, event_journal_dir=jdir), Service.registry)
    await second.connect()
    try:
        assert len(set(await _stored_ids(nats_url, stream, root, 3))) == 3
    finally:
        await second.close()


def test_a_torn_last_record_is_left_out_and_the_rest_read(tmp_path: Path) -> None:
    j = EventJournal(tmp_path, "audit")
    j.open()
    for i in range(3):
        j.append((f"s.{i}", b'{"id":"%d"}' % i, {"Nats-Msg-Id": str(i)}))
    (path,) = list(tmp_path.glob("audit-*.journal"))
    data = path.read_bytes()
    path.write_bytes(data[:-3])  # the last write cut short (a power loss)
    assert [r[0] for r in read_records(path)] == ["s.0", "s.1"]
    j.close()


def test_segments_roll_and_are_removed_once_their_events_are_stored(tmp_path: Path) -> None:
    j = EventJournal(tmp_path, "proxy", segment_max_bytes=200)
    j.open()
    segs = [j.append(("s", b"x" * 80, {"Nats-Msg-Id": str(i)})) for i in range(6)]
    assert len(set(segs)) >= 3 and len(list(tmp_path.glob("*.journal"))) == len(set(segs))
    for s in segs[:-1]:
        j.done(s)
    assert len(list(tmp_path.glob("*.journal"))) == 1  # sealed segments gone; the open one holds one event
    j.done(segs[-1])
    (path,) = list(tmp_path.glob("*.journal"))
    assert path.stat().st_size == 0  # emptied, kept open
    j.close()
    assert list(tmp_path.glob("*.journal")) == []
