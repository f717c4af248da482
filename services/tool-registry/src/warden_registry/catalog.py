"""Pure catalog rules: tool names, operation facts, description cleaning, schema checks, pins.

Nothing here does I/O, so every rule is tested without a database or a bus.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from functools import lru_cache
from typing import Any, Literal

import jsonschema
from jsonschema.exceptions import SchemaError

__all__ = [
    "DESCRIPTION_CAP",
    "SEPARATOR",
    "check_schema",
    "classify",
    "clean_description",
    "is_pattern",
    "pin_hash",
    "tool_name",
    "valid_mcp_name",
]

Operation = Literal["read", "write"]
DESCRIPTION_CAP = 2000
SEPARATOR = "__"
# MCP tool names: 1-128 characters of A-Z a-z 0-9 _ . -
_MCP_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
_PATTERN_CHARS = re.compile(r"[*?\[]")

_READ_WORDS = frozenset(
    """get list search read fetch query find describe show view lookup count check status info retrieve
    browse download export inspect explain whoami echo ping summarize analyze validate preview resolve
    current now stat stats head peek watch poll lookup history logs diff compare estimate calculate
    convert format parse render translate""".split()
)
_WRITE_WORDS = frozenset(
    """create update delete remove send write post put patch add set insert upload move rename archive
    close merge publish execute exec run invite assign cancel approve reject deploy edit modify drop kill
    restart start stop trigger comment reply transfer pay book submit revoke grant push commit replace
    clear reset import sync save apply enable disable schedule mark lock unlock share fork clone destroy
    purge erase wipe terminate scale invoke call order buy sell refund subscribe unsubscribe follow
    unfollow like react upsert store append mutate provision install uninstall register unregister
    login logout sign signup change toggle restore rollback migrate truncate flush""".split()
)


def valid_mcp_name(name: str) -> bool:
    return bool(_MCP_NAME.match(name))


def tool_name(alias: str, upstream: str) -> str:
    """The registered name of an upstream tool: `<alias>__<upstream name>`."""
    return f"{alias}{SEPARATOR}{upstream}"


def is_pattern(grant: str) -> bool:
    """A grant is a pattern (fnmatch-style, `notion__*`) when it has `*`, `?` or `[`."""
    return bool(_PATTERN_CHARS.search(grant))


def _words(text: str) -> list[str]:
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", text)
    return [w for w in re.split(r"[^a-z]+", text.lower()) if w]


def _verb(word: str) -> str | None:
    """`read`/`write` for a verb, allowing English inflections (gets, searches, updated)."""
    for cand in (word, word.removesuffix("s"), word.removesuffix("es"), word.removesuffix("ed"), word[:-1]):
        if cand in _WRITE_WORDS:
            return "write"
        if cand in _READ_WORDS:
            return "read"
    return None


def classify(name: str, description: str | None, annotations: dict[str, Any] | None) -> Operation:
    """The operation fact of an upstream tool.

    MCP annotations first: `readOnlyHint: true` is a read; `readOnlyHint: false` or
    `destructiveHint: true` a write. Without them, the words of the name: any write verb makes
    it a write (so `get_or_create` is a write), else a read verb a read. Then the description's
    first word. Anything unknown is a write: the fail-safe fact.
    """
    ann = annotations or {}
    if ann.get("readOnlyHint") is True:
        return "read"
    if ann.get("readOnlyHint") is False or ann.get("destructiveHint") is True:
        return "write"
    facts = {_verb(w) for w in _words(name)}
    if "write" in facts:
        return "write"
    if "read" in facts:
        return "read"
    first = next(iter(_words(description or "")), "")
    return "read" if _verb(first) == "read" else "write"


def clean_description(text: str | None, cap: int = DESCRIPTION_CAP) -> str:
    """Descriptions reach an agent's context: drop control and format characters (zero-width,
    bidi overrides, private use), keep newlines and tabs, collapse runs of blank lines and
    trailing spaces, cap the length."""
    if not text:
        return ""
    kept = []
    for ch in text:
        if ch in "\n\t":
            kept.append(ch)
        elif ch == "\r":
            continue
        elif unicodedata.category(ch)[0] == "C":
            continue
        else:
            kept.append(ch)
    cleaned = re.sub(r"[ \t]+\n", "\n", "".join(kept))
    cleaned = re.sub(r"\n{3,}", "\n\n", cleaned).strip()
    if len(cleaned) > cap:
        cleaned = cleaned[: cap - 1].rstrip() + "…"
    return cleaned


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


@lru_cache(maxsize=4096)
def _check_canonical(doc: str) -> bool:
    schema = json.loads(doc)
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except (SchemaError, TypeError, ValueError, LookupError):
        return False
    return schema.get("type", "object") == "object"


def check_schema(schema: Any) -> bool:
    """Is this a valid JSON Schema for an MCP tool's input (an object schema)?

    Checked with the schema's own metaschema (`$schema`, default the latest draft). Large
    servers repeat schemas, so the verdict is cached by the schema's canonical JSON.
    """
    if not isinstance(schema, dict):
        return False
    return _check_canonical(_canonical(schema))


def pin_hash(name: str, description: str, schema: Any) -> str:
    """The drift pin: a hash of what an agent is shown (name, cleaned description, schema)."""
    return hashlib.sha256(_canonical({"n": name, "d": description, "s": schema}).encode()).hexdigest()
