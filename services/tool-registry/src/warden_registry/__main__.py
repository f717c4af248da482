"""`python -m warden_registry`: settings from WARDEN_REGISTRY_* env, then serve."""

from __future__ import annotations

import os

from warden_common.web import run_service


def main() -> None:
    # before anything imports onnxruntime (the local embedder): its telemetry stays off
    os.environ["ORT_DISABLE_TELEMETRY"] = "1"
    from warden_registry.app import create_app
    from warden_registry.settings import Settings

    run_service("registry", "WARDEN_REGISTRY_", Settings, create_app)


if __name__ == "__main__":
    main()
