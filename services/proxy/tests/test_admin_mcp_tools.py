"""The admin MCP tools' definitions (pure logic): every input schema is a valid, closed JSON
Schema with limits on every string, number and array; every output schema is an object; the
annotations say what each tool really does; argument errors name the field, never the value;
only the admin token or an admin-scoped JWT authenticates."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from pydantic import SecretStr
from warden_common.errors import Unauthorized
from warden_proxy.admin_mcp import ADMIN_TOOLS, AdminAuth
from warden_proxy.admin_mcp.auth import has_admin_scope
from warden_proxy.admin_mcp.endpoint import check_arguments

READ_ONLY = {
    "list_connections", "get_connection", "discover_tools", "list_tools", "get_tool", "list_profiles",
    "list_approvals", "list_executions", "search_audit", "verify_audit",
}  # fmt: skip
DESTRUCTIVE = {"update_connection", "disconnect_connection", "delete_connection", "revoke_grant"}


def _unlimited(schema: dict[str, Any], where: str = "") -> list[str]:
    """Places in a schema where a caller could send something unbounded."""
    out = []
    t = schema.get("type")
    if t == "string" and "maxLength" not in schema and "enum" not in schema:
        out.append(where)
    if t in ("integer", "number") and "maximum" not in schema:
        out.append(where)
    if t == "array":
        if "maxItems" not in schema:
            out.append(where)
        out += _unlimited(schema.get("items", {}), where + "[]")
    if t == "object":
        if schema.get("additionalProperties") is not False and "maxProperties" not in schema:
            out.append(where + " (open)")
        for k, v in schema.get("properties", {}).items():
            out += _unlimited(v, f"{where}.{k}")
    return out


def test_there_are_the_issues_23_tools() -> None:
    assert len(ADMIN_TOOLS) == 23
    assert {"create_connection", "delete_connection", "grant_tools", "decide_approval", "verify_audit"} <= set(
        ADMIN_TOOLS
    )


@pytest.mark.parametrize("name", sorted(ADMIN_TOOLS))
def test_every_input_schema_is_valid_closed_and_limited(name: str) -> None:
    tool = ADMIN_TOOLS[name]
    jsonschema.Draft202012Validator.check_schema(tool.input_schema)
    jsonschema.Draft202012Validator.check_schema(tool.output_schema)
    assert tool.input_schema["type"] == "object" and tool.input_schema["additionalProperties"] is False
    assert tool.output_schema["type"] == "object"
    assert _unlimited(tool.input_schema) == []
    wire = tool.wire()
    assert wire.output_schema == tool.output_schema and wire.description and wire.title


@pytest.mark.parametrize("name", sorted(ADMIN_TOOLS))
def test_the_annotations_say_what_the_tool_does(name: str) -> None:
    a = ADMIN_TOOLS[name].annotations
    assert a.read_only_hint is (name in READ_ONLY)
    assert a.destructive_hint is (name in DESTRUCTIVE)
    assert a.idempotent_hint is not None and a.open_world_hint is not None
    if name.startswith(("list_", "get_", "search_")):
        assert a.idempotent_hint is True


def test_argument_errors_name_the_field_and_the_limit_never_the_value() -> None:
    secret = "s3cr3t-" + "x" * 3000
    msg = check_arguments("create_connection", {"name": "ok", "url": secret})
    assert msg is not None and "url" in msg and "maxLength" in msg and secret not in msg
    msg = check_arguments("list_executions", {"limit": 10**6})
    assert msg is not None and "limit" in msg and "maximum" in msg
    assert check_arguments("get_connection", {}) is not None  # name is required
    assert check_arguments("get_connection", {"name": "a", "extra": 1}) is not None  # closed
    assert check_arguments("get_connection", {"name": "notion"}) is None


def test_the_admin_scope_is_read_from_scope_or_scp() -> None:
    assert has_admin_scope({"scope": "openid warden:admin"})
    assert has_admin_scope({"scp": ["warden:admin"]})
    assert not has_admin_scope({"scope": "openid mcp:tools warden:admins"})
    assert not has_admin_scope({"scope": ["warden:admin"] * 0})


async def test_only_the_admin_token_authenticates_without_jwt_callers() -> None:
    auth = AdminAuth(SecretStr("adm-" + "t" * 30), None)
    me = await auth.authenticate("Bearer adm-" + "t" * 30)
    assert me.actor == "admin" and me.via == "token"
    with pytest.raises(Unauthorized, match="agent API key cannot manage Warden"):
        await auth.authenticate("Bearer wk_abcd1234_secret")
    for bad in (None, "", "Basic adm-" + "t" * 30, "Bearer adm-" + "t" * 29, "Bearer a.b.c"):
        with pytest.raises(Unauthorized):
            await auth.authenticate(bad)
