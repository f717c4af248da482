"""`python -m warden_proxy`: settings from WARDEN_PROXY_* env, then serve."""

from __future__ import annotations

import asyncio

from warden_common.web import run_service


def _fast_loop() -> None:
    """uvloop when installed: the proxy is on the hot path of every call (sockets to NATS,
    to the upstreams and to the agents), and libuv's loop and transports cost less per call."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def main() -> None:
    from warden_proxy.app import create_app
    from warden_proxy.settings import Settings

    _fast_loop()

    run_service("proxy", "WARDEN_PROXY_", Settings, create_app)


if __name__ == "__main__":
    main()
