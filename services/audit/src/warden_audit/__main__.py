"""`python -m warden_audit` (or `warden-audit`): settings from WARDEN_AUDIT_* env, then serve."""

from __future__ import annotations

import sys

from pydantic import ValidationError
from warden_common.logging import setup_logging
from warden_common.web import serve_http

from warden_audit.app import create_app
from warden_audit.settings import Settings


def main() -> None:
    try:
        settings = Settings()  # type: ignore[call-arg]
    except ValidationError as e:
        err = e.errors()[0]
        field = "__".join(str(x) for x in err.get("loc", ())).upper() or "(settings)"
        print(f"warden-audit: bad setting: WARDEN_AUDIT_{field}: {err.get('msg', 'invalid')}", file=sys.stderr)
        sys.exit(2)
    setup_logging("audit", settings.log_level)
    serve_http(create_app(settings), settings.http, "audit")


if __name__ == "__main__":
    main()
