"""The AsyncAPI document of the NATS subjects (issue 14): generated from the contracts, and the
checked-in `docs/asyncapi.json` equals what the code generates (CI catches drift)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from warden_common import contracts
from warden_common.asyncapi import build, render
from warden_common.contracts.base import Subject

REPO = Path(__file__).resolve().parents[3]
CHECKED_IN = REPO / "docs" / "asyncapi.json"


def test_the_checked_in_document_is_the_generated_one() -> None:
    assert CHECKED_IN.read_text(encoding="utf-8") == render(), (
        "docs/asyncapi.json is stale: run `.venv/bin/warden asyncapi` and commit it"
    )


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref" and isinstance(v, str)] + [
            r for k, v in node.items() if k != "$ref" for r in _refs(v)
        ]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_every_reference_resolves_and_every_subject_is_in_it() -> None:
    doc = build()
    assert doc["asyncapi"] == "3.0.0"
    for ref in _refs(doc):
        assert ref.startswith("#/"), ref
        node: Any = doc
        for part in ref[2:].split("/"):
            node = node[part]  # KeyError: a dangling reference
    addresses = {c["address"] for c in doc["channels"].values()}
    subjects = [v for v in vars(contracts).values() if isinstance(v, Subject)]
    assert subjects and all(s.on("warden") in addresses for s in subjects)
    for s in ("calls.{profile}.{caller}", "durable.calls.{profile}.{caller}", "events.{source}.{type}"):
        assert f"warden.v1.{s}" in addresses
    call = doc["components"]["schemas"]["ToolCall"]
    assert call["required"] == ["tool"] and "idempotency_key" in call["properties"]
    reply = doc["components"]["schemas"]["Reply_ToolCallResult_"]["properties"]
    assert set(reply) == {"result", "error"}


def test_warden_asyncapi_writes_it(tmp_path: Path) -> None:
    out = tmp_path / "asyncapi.json"
    cli = Path(sys.executable).parent / "warden"
    if not cli.exists():
        pytest.skip("warden-cli is not installed")
    subprocess.run([str(cli), "asyncapi", "--out", str(out)], check=True, capture_output=True)
    assert json.loads(out.read_text(encoding="utf-8")) == build()


def test_the_document_is_valid_asyncapi_3() -> None:
    """Against the AsyncAPI 3.0.0 JSON schema (tests/data: `schemas/3.0.0-without-$id.json` of
    the asyncapi/spec-json-schemas repository, 6.11.1, Apache-2.0, minified)."""
    import jsonschema

    schema = json.loads((Path(__file__).parent / "data" / "asyncapi-3.0.0.schema.json").read_text(encoding="utf-8"))
    errors = [f"{list(e.path)}: {e.message[:200]}" for e in jsonschema.Draft7Validator(schema).iter_errors(build())]
    assert not errors, errors
