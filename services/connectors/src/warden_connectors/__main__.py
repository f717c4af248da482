"""`python -m warden_connectors`: settings from WARDEN_CONNECTORS_* env, then serve."""

from __future__ import annotations

from warden_common.web import run_service


def main() -> None:
    from warden_connectors.app import create_app
    from warden_connectors.settings import Settings

    run_service("connectors", "WARDEN_CONNECTORS_", Settings, create_app)


if __name__ == "__main__":
    main()
