"""`python -m warden_console`: settings from WARDEN_CONSOLE_* env, then serve."""

from __future__ import annotations

from warden_common.web import run_service


def main() -> None:
    from warden_console.app import create_app
    from warden_console.settings import Settings

    run_service("console", "WARDEN_CONSOLE_", Settings, create_app)


if __name__ == "__main__":
    main()
