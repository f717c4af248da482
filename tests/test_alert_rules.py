"""deploy/alerts/warden-rules.yaml alerts on metrics the services really export: a renamed
metric must not leave an alert that can never fire."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import REGISTRY, generate_latest

RULES = Path(__file__).resolve().parents[1] / "deploy/alerts/warden-rules.yaml"


def test_every_metric_an_alert_uses_is_exported() -> None:
    import warden_audit.handlers  # noqa: F401 - registers audit's metrics
    import warden_common.outbox  # noqa: F401 - registers the outbox's metrics

    exported = generate_latest(REGISTRY).decode()
    exprs = [line for line in RULES.read_text().splitlines() if line.strip().startswith("expr:")]
    used = {m for line in exprs for m in re.findall(r"\b(warden_[a-z_]+)\b", line)}
    assert used, "no metric named in the rules"
    assert sorted(m for m in used if f"# TYPE {m} " not in exported and f"# HELP {m} " not in exported) == []
    for alert in ("WardenEventsNotFlowing", "WardenEventsDeadLettered"):
        assert f"alert: {alert}" in RULES.read_text()
