"""`python -m warden_registry`: settings from WARDEN_REGISTRY_* env, then serve."""

from __future__ import annotations

from warden_common.web import run_service


def main() -> None:
    from warden_registry.app import create_app
    from warden_registry.settings import Settings

    run_service("registry", "WARDEN_REGISTRY_", Settings, create_app)


if __name__ == "__main__":
    main()
