"""Every declared setting does something: each field of each service's Settings (and of the
shared groups nested in them) is read somewhere in the code beyond its declaration. A
setting nobody reads (`WARDEN_PROXY_MAX_ARGUMENT_BYTES` was one) misleads the operator who
sets it."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
from pydantic import BaseModel

REPO = Path(__file__).resolve().parents[1]
SERVICES = {
    "warden_connectors": REPO / "services/connectors/src/warden_connectors",
    "warden_registry": REPO / "services/tool-registry/src/warden_registry",
    "warden_proxy": REPO / "services/proxy/src/warden_proxy",
    "warden_audit": REPO / "services/audit/src/warden_audit",
    "warden_console": REPO / "services/console/src/warden_console",
}
COMMON = REPO / "libs/common/src/warden_common"


def _sources(*roots: Path, skip: Path | None = None) -> str:
    return "\n".join(p.read_text() for root in roots for p in root.rglob("*.py") if p != skip)


def _unused(model: type[BaseModel], text: str, prefix: str = "") -> list[str]:
    out = []
    for name, field in model.model_fields.items():
        if not re.search(rf"\.{re.escape(name)}\b|[\"']{re.escape(name)}[\"']", text):
            out.append(prefix + name)
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out += _unused(ann, text, prefix + name + ".")
    return out


@pytest.mark.parametrize("package", sorted(SERVICES))
def test_every_setting_of_the_service_is_read(package: str) -> None:
    settings = importlib.import_module(f"{package}.settings").Settings
    root = SERVICES[package]
    # the service's own code, and the shared code that reads the groups it nests (bus, db, web)
    text = _sources(root, COMMON)
    assert _unused(settings, text) == []
