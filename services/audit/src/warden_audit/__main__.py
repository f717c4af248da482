from __future__ import annotations

import sys

from pydantic import ValidationError
from warden_common.logging import setup_logging
from warden_common.web import serve_http


def main() -> None:
    from warden_audit.app import create_app
    from warden_audit.settings import Settings

    try:
        settings = Settings()  # type: ignore[call-arg]
        app = create_app(settings)
    except ValidationError as e:
        err = e.errors()[0]
        loc = "__".join(str(x) for x in err["loc"]).upper()
        print(f"warden-audit: bad setting WARDEN_AUDIT_{loc}: {err['msg']}", file=sys.stderr)
        sys.exit(2)
    except ValueError as e:
        print(f"warden-audit: bad setting: {e}", file=sys.stderr)
        sys.exit(2)
    setup_logging("audit", settings.log_level)
    serve_http(app, settings.http, "audit")


if __name__ == "__main__":
    main()
