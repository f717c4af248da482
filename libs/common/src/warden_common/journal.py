"""The outbox's journal on disk: an event is written to a local file when it is emitted, before
it is published, and forgotten once the stream has stored it, so a process killed with events
still in its outbox (SIGKILL, an OOM kill, a crash) loses none of them. The next process of the
same service that uses the same directory — the restarted one, or another replica beside it —
adopts the dead process's journal and publishes what it holds (the stream and audit de-duplicate
by event id, so an event published just before the kill is not stored twice).

- One file per segment, `<service>-<process token>-<n>.journal`, held under an exclusive `flock`
  while its process lives: a journal whose lock can be taken belongs to a dead process.
- A record is `<u32 meta length><u32 payload length><meta JSON [subject, headers]><payload>`,
  written with one `os.write` (a killed process's last write is complete or absent; a torn tail
  from a power loss is ignored on reading). No fsync: a SIGKILLed process loses nothing (the
  kernel has the bytes); a machine that loses power may lose its last events. Files are 0600 in a
  0700 directory (events carry tool arguments, bounded; never a credential).
- A segment is sealed at `segment_max_bytes` and deleted once every event in it is stored; the
  open segment is emptied when nothing in it is waiting.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import struct
from dataclasses import dataclass
from pathlib import Path

import orjson

__all__ = ["EventJournal", "Record"]

log = logging.getLogger(__name__)
Record = tuple[str, bytes, dict[str, str]]  # subject, payload, headers: an event as published
_HEAD = struct.Struct("<II")
_MAX_RECORD = 1024 * 1024 * 1024


@dataclass
class _Segment:
    n: int
    path: Path
    fd: int
    size: int = 0
    waiting: int = 0  # events in it not yet stored by the stream
    sealed: bool = False


class EventJournal:
    def __init__(self, directory: Path, service: str, *, segment_max_bytes: int = 8 * 1024 * 1024) -> None:
        self.directory = directory
        self.service = service
        self.segment_max_bytes = segment_max_bytes
        self.token = secrets.token_hex(6)
        self._segments: dict[int, _Segment] = {}
        self._current: _Segment | None = None
        self._next = 0

    # -- this process's segments -----------------------------------------------------------
    def open(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._roll()

    def _roll(self) -> _Segment:
        if self._current is not None:
            self._current.sealed = True
            self._forget_if_done(self._current)
        path = self.directory / f"{self.service}-{self.token}-{self._next:06d}.journal"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        seg = _Segment(self._next, path, fd)
        self._segments[seg.n] = seg
        self._current = seg
        self._next += 1
        return seg

    def append(self, record: Record) -> int:
        """Write an event; the segment it is in (give it to `done` once the stream stored it).
        Raises OSError when the disk refuses (the caller keeps the event in memory)."""
        subject, payload, headers = record
        meta = orjson.dumps([subject, headers])
        seg = self._current
        if seg is None:
            raise OSError("the event journal is not open")
        if seg.size and seg.size + len(meta) + len(payload) > self.segment_max_bytes:
            seg = self._roll()
        data = _HEAD.pack(len(meta), len(payload)) + meta + payload
        os.write(seg.fd, data)
        seg.size += len(data)
        seg.waiting += 1
        return seg.n

    def done(self, n: int) -> None:
        """An event of segment `n` is stored by the stream (or dead-lettered)."""
        seg = self._segments.get(n)
        if seg is None:
            return
        seg.waiting -= 1
        self._forget_if_done(seg)

    def _forget_if_done(self, seg: _Segment) -> None:
        if seg.waiting > 0:
            return
        if seg.sealed:
            self._segments.pop(seg.n, None)
            with contextlib.suppress(OSError):
                seg.path.unlink()
            os.close(seg.fd)
        elif seg.size:
            os.ftruncate(seg.fd, 0)  # O_APPEND: the next write starts at 0 again
            seg.size = 0

    @property
    def is_open(self) -> bool:
        return self._current is not None

    @property
    def waiting(self) -> int:
        return sum(s.waiting for s in self._segments.values())

    @property
    def size_bytes(self) -> int:
        return sum(s.size for s in self._segments.values())

    def close(self) -> None:
        """Release this process's segments: deleted when nothing in them waits, else left for
        the next process to adopt."""
        left = self.waiting
        for seg in list(self._segments.values()):
            seg.sealed = True
            if seg.waiting <= 0:
                self._forget_if_done(seg)
            else:
                os.close(seg.fd)  # releases the lock: the next start adopts it
        self._segments.clear()
        self._current = None
        if left:
            log.warning("%d events not yet stored stay in the journal at %s for the next start", left, self.directory)

    # -- other processes' journals ---------------------------------------------------------
    def adopt(self) -> list[tuple[Path, int, list[Record]]]:
        """The journals of dead processes of this service: (path, locked fd, records). The
        caller queues the records (writing them to this journal) and then calls `release`."""
        found: list[tuple[Path, int, list[Record]]] = []
        mine = {s.path for s in self._segments.values()}
        try:
            paths = sorted(self.directory.glob(f"{self.service}-*.journal"))
        except OSError:
            return found
        for path in paths:
            if path in mine:
                continue
            try:
                fd = os.open(path, os.O_RDWR)
            except OSError:
                continue  # deleted meanwhile by its owner or another adopter
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)  # its process is alive
                continue
            if not path.exists():  # adopted and removed between our glob and our lock
                os.close(fd)
                continue
            try:
                records = read_records(path)
            except OSError as e:
                log.error("cannot read the event journal %s (%s); left in place", path.name, e)
                os.close(fd)
                continue
            found.append((path, fd, records))
        return found

    @staticmethod
    def release(path: Path, fd: int) -> None:
        """An adopted journal whose records are now in this process's journal: removed."""
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)


def read_records(path: Path) -> list[Record]:
    """The complete records of a journal file (a torn last record is left out)."""
    data = path.read_bytes()
    out: list[Record] = []
    i = 0
    while i + _HEAD.size <= len(data):
        meta_len, payload_len = _HEAD.unpack_from(data, i)
        end = i + _HEAD.size + meta_len + payload_len
        if meta_len > _MAX_RECORD or payload_len > _MAX_RECORD or end > len(data):
            log.warning("event journal %s: a torn record at byte %d is left out", path.name, i)
            break
        start = i + _HEAD.size
        try:
            subject, headers = orjson.loads(data[start : start + meta_len])
        except (orjson.JSONDecodeError, ValueError, TypeError):
            log.warning("event journal %s: an unreadable record at byte %d is left out", path.name, i)
            break
        if isinstance(subject, str) and isinstance(headers, dict):
            out.append((subject, data[start + meta_len : end], {str(k): str(v) for k, v in headers.items()}))
        i = end
    return out
