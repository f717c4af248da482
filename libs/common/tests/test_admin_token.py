"""The admin token of every service must be a real secret: a value copied from an example
(deploy/secrets.example.yaml's `CHANGE-ME-…`) or one with too few distinct characters stops
the service at start with one line naming the setting."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError
from warden_common.runtime import ServiceSettings, settings_config

REPO = Path(__file__).resolve().parents[3]


class _Settings(ServiceSettings):
    model_config = settings_config("WARDEN_TEST_")


def _settings(token: str) -> _Settings:
    return _Settings(postgres={"dsn": "postgresql://u@127.0.0.1/db"}, admin_token=token)  # type: ignore[arg-type]


def _example_token() -> str:
    doc = yaml.safe_load((REPO / "deploy" / "secrets.example.yaml").read_text())
    return str(doc["stringData"]["admin-token"])


@pytest.mark.parametrize(
    "token",
    [
        "CHANGE-ME-long-random",
        "changeme-changeme-changeme",
        "replace_me_with_a_real_token",
        "your-token-goes-here-please",
        "example-admin-token-0123",
        "a" * 32,
        "abababababababababababab",
    ],
)
def test_a_placeholder_admin_token_is_refused(token: str) -> None:
    with pytest.raises(ValidationError, match="placeholder"):
        _settings(token)


def test_a_random_admin_token_is_accepted() -> None:
    assert _settings("k3Jx9-QpZ7vT2mWc8LrB4nYd").admin_token.get_secret_value().startswith("k3Jx9")


def test_the_example_secrets_admin_token_stops_a_service_at_start() -> None:
    env = {
        **os.environ,
        "WARDEN_AUDIT_POSTGRES__DSN": "postgresql://u@127.0.0.1:1/db",
        "WARDEN_AUDIT_ADMIN_TOKEN": _example_token(),
    }
    p = subprocess.run([sys.executable, "-m", "warden_audit"], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    line = p.stderr.strip().splitlines()[-1]
    assert line.startswith("warden-audit: bad setting: WARDEN_AUDIT_ADMIN_TOKEN: ") and "placeholder" in line
    assert _example_token() not in p.stderr
