"""`python -m warden_proxy`: settings from WARDEN_PROXY_* env, then serve."""

from __future__ import annotations

from warden_common.web import run_service


def main() -> None:
    from warden_proxy.app import create_app
    from warden_proxy.settings import Settings

    run_service("proxy", "WARDEN_PROXY_", Settings, create_app)


if __name__ == "__main__":
    main()
