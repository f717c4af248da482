"""Signed checkpoints of the lane heads, kept outside the database (issue 16 item 11d).

The chain's hashes are unkeyed and its heads live beside the rows, so someone who can write
the database can edit a row and re-chain everything after it. A checkpoint records each
lane's head (place, seq, hash) at one moment, signed with HMAC-SHA256 under a key the
database never holds (`WARDEN_AUDIT_CHAIN_KEY` / `_FILE`), appended as one JSON line to a
file outside it (`WARDEN_AUDIT_CHECKPOINT_FILE`). `verify` then also checks that every
checkpointed row still has its checkpointed hash and that no lane is shorter than its
checkpoint: a rewrite of anything up to the last checkpoint is reported. (Rows after the last
checkpoint are covered from the next one on; one is written after every full, clean verify
and by the maintenance loop.) A line whose signature does not hold is itself reported.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from warden_audit.store import Head

__all__ = ["EXECUTION_SIGNED", "EXECUTION_SIGNED_SELECT", "CheckpointError", "Checkpoints", "execution_values"]

# the executions columns a row's signature covers (jsonb ones read as text: one value, one
# text, whichever codec the connection uses), in this order
_EXEC_JSONB = ("arguments", "result", "error")
EXECUTION_SIGNED = (
    "call_id", "tool", "connector", "profile", "user_id", "actor_kind", "actor_id", "trace_id", "state",
    "state_rank", "status", "started_at", "requested_at", "decided_at", "finished_at", "latency_ms",
    "arguments", "result", "error", "approver", "event_count", "updated_at",
)  # fmt: skip
EXECUTION_SIGNED_SELECT = ", ".join(f"{c}::text AS {c}" if c in _EXEC_JSONB else c for c in EXECUTION_SIGNED)


def execution_values(r: Any) -> bytes:
    """The bytes an executions row's signature covers (a record with EXECUTION_SIGNED_SELECT)."""
    vals = []
    for c in EXECUTION_SIGNED:
        v = r[c]
        if isinstance(v, datetime):
            v = v.astimezone(UTC).isoformat()
        elif isinstance(v, float) and not math.isfinite(v):
            v = str(v)
        vals.append(v)
    return json.dumps(vals, separators=(",", ":"), ensure_ascii=False).encode()


class CheckpointError(Exception):
    """The checkpoint file cannot be trusted (a line's signature fails, or it is unreadable)."""


def _canonical(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


class Checkpoints:
    def __init__(self, path: Path, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the audit chain key must be at least 16 bytes")
        self.path = path
        self._key = key
        self._exec_key = hmac.new(key, b"warden-audit executions v1", hashlib.sha256).digest()

    def _mac(self, doc: dict[str, Any]) -> str:
        return hmac.new(self._key, _canonical(doc), hashlib.sha256).hexdigest()

    def sign_execution(self, r: Any) -> bytes:
        """The signature of one executions row (under a key derived from the chain key, so a
        row's signature can never pass for a checkpoint's)."""
        return hmac.new(self._exec_key, execution_values(r), hashlib.sha256).digest()

    def execution_ok(self, r: Any, mac: bytes | None) -> bool:
        return mac is not None and hmac.compare_digest(bytes(mac), self.sign_execution(r))

    def write(self, heads: Sequence[Head]) -> dict[str, Any]:
        """Append a signed checkpoint of these heads (fsync'd) and return it."""
        doc: dict[str, Any] = {
            "v": 1,
            "time": datetime.now(UTC).isoformat(),
            "lanes": [{"lane": h.lane, "lane_seq": h.lane_seq, "seq": h.seq, "hash": h.hash.hex()} for h in heads],
        }
        line = _canonical({**doc, "mac": self._mac(doc)}) + b"\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        return doc

    def latest(self) -> dict[str, Any] | None:
        """The last checkpoint, every line's signature checked (None: none written yet)."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise CheckpointError(f"the checkpoint file {self.path} cannot be read: {e.strerror}") from None
        last: dict[str, Any] | None = None
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
                mac = doc.pop("mac")
            except (ValueError, KeyError, AttributeError, TypeError):
                raise CheckpointError(f"line {n} of the checkpoint file {self.path} is not a checkpoint") from None
            if not isinstance(mac, str) or not hmac.compare_digest(mac, self._mac(doc)):
                raise CheckpointError(
                    f"line {n} of the checkpoint file {self.path} does not match its signature: "
                    "it was changed, or the chain key is not the one it was signed with"
                )
            last = doc
        return last
