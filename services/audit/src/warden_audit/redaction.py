"""Redaction of tool arguments and results before they are stored (pure logic).

Rules come from settings, first match on the tool name (a glob) wins. Per key name
(globs, any depth): `keep`, `hash` (SHA-256, or HMAC-SHA256 with a key, of the value's
canonical JSON) or `drop`; `drop_all` stores nothing of the payload. Oversized payloads
are replaced by a marker with their size and digest.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import json
from functools import lru_cache
from typing import Any

from warden_audit.settings import Action, RedactionRule

__all__ = ["DROPPED", "Redactor", "cap_json", "capped_text"]

DROPPED = "[dropped by audit redaction rule]"


def _canon(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def cap_json(value: Any, cap: int) -> Any:
    """`value`, or a small marker when its JSON is longer than `cap` bytes."""
    raw = _canon(value)
    if len(raw) <= cap:
        return value
    return {
        "_truncated": True,
        "bytes": len(raw),
        "sha256": hashlib.sha256(raw).hexdigest(),
        "preview": raw[: min(512, cap // 4)].decode(errors="ignore"),
    }


def capped_text(value: Any, cap: int) -> str:
    """Canonical JSON of `value`, or of the marker `cap_json` would give (one dump when it fits)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    if len(text) * 4 <= cap or len(text.encode()) <= cap:
        return text
    return json.dumps(cap_json(value, cap), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class Redactor:
    def __init__(self, rules: list[RedactionRule], hash_key: bytes | None = None) -> None:
        self.rules = list(rules)
        self.hash_key = hash_key
        self.rule_for = lru_cache(maxsize=4096)(self._rule_for)

    def _rule_for(self, tool: str | None) -> RedactionRule | None:
        if tool is None:
            return None
        for rule in self.rules:
            if fnmatch.fnmatchcase(tool, rule.tools):
                return rule
        return None

    def digest(self, value: Any) -> str:
        raw = _canon(value)
        if self.hash_key:
            return "hmac-sha256:" + hmac.new(self.hash_key, raw, hashlib.sha256).hexdigest()
        return "sha256:" + hashlib.sha256(raw).hexdigest()

    def apply(self, tool: str | None, value: Any) -> Any:
        """Return `value` as the rule for `tool` allows it to be stored."""
        rule = self.rule_for(tool)
        if rule is None:
            return value
        if rule.drop_all:
            return DROPPED
        if not rule.fields and rule.default == "keep":
            return value
        return self._walk(value, rule, rule.default)

    def _action(self, key: str, rule: RedactionRule) -> Action | None:
        for pattern, action in rule.fields.items():
            if fnmatch.fnmatchcase(key, pattern):
                return action
        return None

    def _walk(self, value: Any, rule: RedactionRule, default: Action) -> Any:
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for k, v in value.items():
                explicit = self._action(k, rule)
                action = explicit or default
                if action == "drop":
                    continue
                if action == "hash":
                    out[k] = self.digest(v)
                elif explicit == "keep":
                    # explicitly kept: the subtree stays, except keys named explicitly
                    out[k] = self._walk(v, rule, "keep")
                else:
                    out[k] = self._walk(v, rule, default)
            return out
        if isinstance(value, list):
            return [self._walk(v, rule, default) for v in value]
        return value
