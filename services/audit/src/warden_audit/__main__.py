"""`python -m warden_audit`: settings from WARDEN_AUDIT_* env, then serve."""

from __future__ import annotations

from warden_common.web import run_service


def main() -> None:
    from warden_audit.app import create_app
    from warden_audit.settings import Settings

    run_service("audit", "WARDEN_AUDIT_", Settings, create_app)


if __name__ == "__main__":
    main()
