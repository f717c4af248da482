"""`python -m warden_audit`: settings from WARDEN_AUDIT_* env, then serve."""

from __future__ import annotations

import asyncio

from warden_common.web import run_service


def _use_uvloop() -> None:
    """libuv's loop when installed: ingest is bound by this process's one core, and its
    sockets to NATS and Postgres cost less there (see bench/audit)."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def main() -> None:
    from warden_audit.app import create_app
    from warden_audit.settings import Settings

    _use_uvloop()
    run_service("audit", "WARDEN_AUDIT_", Settings, create_app)


if __name__ == "__main__":
    main()
