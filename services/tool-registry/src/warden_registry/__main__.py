"""`warden-tool-registry` / `python -m warden_registry`: build the settings, serve."""

from __future__ import annotations

import sys

from pydantic import ValidationError
from warden_common.logging import setup_logging
from warden_common.web import serve_http


def main() -> None:
    from warden_registry.app import create_app
    from warden_registry.settings import Settings

    try:
        settings = Settings()  # type: ignore[call-arg]
    except ValidationError as e:
        err = e.errors()[0]
        loc = "__".join(str(x) for x in err["loc"]).upper()
        print(f"warden-registry: bad setting: WARDEN_REGISTRY_{loc}: {err['msg']}", file=sys.stderr)
        sys.exit(2)
    setup_logging("registry", settings.log_level)
    serve_http(create_app(settings), settings.http, "registry")


if __name__ == "__main__":
    main()
