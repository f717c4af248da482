"""Audit test fixtures: real NATS and Postgres, isolated per run.

Each run gets a unique subject root (so its own events stream) and a fresh database
created on the server and dropped afterwards. NATS_URL / DATABASE_URL point at them.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from audit_support import Audit, publisher, run_audit
from warden_common.bus import Bus

# Redaction rules the shared instance runs with (tests use these tool names).
REDACTION = [
    {"tools": "redact_drop__*", "drop_all": True},
    {"tools": "redact_fields__*", "fields": {"email": "hash", "body": "drop", "title": "keep"}},
    {"tools": "redact_allow__*", "fields": {"query": "keep"}, "default": "drop"},
]


@pytest.fixture(scope="session")
async def audit() -> AsyncIterator[Audit]:
    """One audit instance for the run (tests tag their events with their own tool/ids)."""
    async with run_audit(redaction=REDACTION) as a:
        yield a


@pytest.fixture(scope="session")
async def bus(audit: Audit) -> AsyncIterator[Bus]:
    async with publisher(audit.root) as b:
        yield b


@pytest.fixture
def tag() -> str:
    """A unique marker for one test's events (used in tool names, ids, call ids)."""
    return uuid.uuid4().hex[:8]
