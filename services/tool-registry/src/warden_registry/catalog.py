"""Pure catalog rules: tool names, operation facts, description cleaning, drift pins."""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from typing import Any

import jsonschema
from jsonschema.exceptions import SchemaError

__all__ = [
    "DESCRIPTION_CAP",
    "check_schema",
    "classify",
    "clean_description",
    "pin_hash",
    "tool_name",
    "valid_mcp_name",
]

DESCRIPTION_CAP = 2000
_MCP_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
_READ_WORDS = {
    "get",
    "list",
    "search",
    "read",
    "fetch",
    "query",
    "find",
    "describe",
    "show",
    "view",
    "lookup",
    "count",
    "check",
    "status",
    "info",
    "retrieve",
    "browse",
    "download",
    "export",
    "inspect",
    "explain",
    "whoami",
    "echo",
    "ping",
    "summarize",
    "analyze",
    "validate",
    "preview",
    "resolve",
    "current",
    "now",
}
_WRITE_WORDS = {
    "create",
    "update",
    "delete",
    "remove",
    "send",
    "write",
    "post",
    "put",
    "patch",
    "add",
    "set",
    "insert",
    "upload",
    "move",
    "rename",
    "archive",
    "close",
    "merge",
    "publish",
    "execute",
    "run",
    "invite",
    "assign",
    "cancel",
    "approve",
    "reject",
    "deploy",
    "edit",
    "modify",
    "drop",
    "kill",
    "restart",
    "start",
    "stop",
    "trigger",
    "comment",
    "reply",
    "transfer",
    "pay",
    "book",
    "submit",
    "revoke",
    "grant",
    "push",
    "commit",
}


def valid_mcp_name(name: str) -> bool:
    return bool(_MCP_NAME.match(name))


def tool_name(alias: str, upstream: str) -> str:
    return f"{alias}__{upstream}"


def classify(name: str, description: str | None, annotations: dict[str, Any] | None) -> str:
    """`read` or `write`: annotations first (readOnlyHint / destructiveHint), then words in
    the name and description; unknown is `write` (the fail-safe fact)."""
    ann = annotations or {}
    if ann.get("readOnlyHint") is True:
        return "read"
    if ann.get("destructiveHint") is True or ann.get("readOnlyHint") is False:
        return "write"
    words = [w for w in re.split(r"[^a-z]+", re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()) if w]
    for w in words:
        if w in _WRITE_WORDS:
            return "write"
        if w in _READ_WORDS:
            return "read"
    first = next(iter(re.findall(r"[a-z]+", (description or "").lower())), "")
    if first.rstrip("s") in _READ_WORDS or first in _READ_WORDS:
        return "read"
    return "write"


def clean_description(text: str | None, cap: int = DESCRIPTION_CAP) -> str:
    """Descriptions reach an agent's context: drop control and format characters, collapse
    runs of blank lines, cap the length."""
    if not text:
        return ""
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        if ch in "\n\t":
            out.append(ch)
        elif cat.startswith("C"):  # control, format (zero-width, bidi overrides), private use
            continue
        else:
            out.append(ch)
    cleaned = re.sub(r"\n{3,}", "\n\n", "".join(out)).strip()
    if len(cleaned) > cap:
        cleaned = cleaned[: cap - 1].rstrip() + "…"
    return cleaned


def check_schema(schema: Any) -> bool:
    if not isinstance(schema, dict):
        return False
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except (SchemaError, TypeError, ValueError):
        return False
    return schema.get("type", "object") == "object"


def pin_hash(name: str, description: str, schema: Any) -> str:
    doc = json.dumps({"n": name, "d": description, "s": schema}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(doc.encode()).hexdigest()
