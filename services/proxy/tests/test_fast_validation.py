"""The fast argument check only ever says "valid" where python-jsonschema does, and never
fetches a remote `$ref` (pure logic, plus one local socket that must stay untouched)."""

from __future__ import annotations

import random
import socket
from typing import Any

import jsonschema
import pytest
from warden_proxy.service import _fast_validator

SCHEMAS: list[dict[str, Any]] = [
    {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
    {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {
            "n": {"type": "integer", "minimum": 0, "maximum": 10},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 3}, "uniqueItems": True},
            "mode": {"enum": ["a", "b"]},
        },
        "additionalProperties": False,
    },
    {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "when": {"type": "string", "format": "date-time"},  # an annotation, as in python-jsonschema
            "email": {"type": "string", "format": "email"},
            "id": {"type": "string", "pattern": "^[a-z]+-[0-9]+$"},
            "x": {"oneOf": [{"type": "number", "multipleOf": 0.5}, {"type": "null"}]},
        },
        "required": ["id"],
        "$defs": {"pos": {"type": "number", "exclusiveMinimum": 0}},
        "patternProperties": {"^n_": {"$ref": "#/$defs/pos"}},
    },
    {"type": "object", "properties": {"q": {"type": "string", "minLength": 1}}, "dependentRequired": {"q": ["k"]}},
]
VALUES: list[Any] = [
    None,
    True,
    0,
    1,
    -1,
    2.5,
    7,
    11,
    1.0,
    "",
    "a",
    "abc-12",
    "abcd",
    "not a date",
    [],
    ["a", "a"],
    ["ab"],
    {},
]


def _random_args(rng: random.Random) -> dict[str, Any]:
    keys = ["text", "n", "tags", "mode", "when", "email", "id", "x", "n_1", "q", "k", "extra"]
    return {k: rng.choice(VALUES) for k in rng.sample(keys, rng.randrange(5))}


@pytest.mark.parametrize("schema", SCHEMAS, ids=range(len(SCHEMAS)))
def test_fast_verdict_agrees_with_python_jsonschema(schema: dict[str, Any]) -> None:
    fast = _fast_validator(schema)
    assert fast is not None
    slow = jsonschema.validators.validator_for(schema)(schema)
    rng = random.Random(7)
    agree = 0
    for _ in range(3000):
        args = _random_args(rng)
        valid = slow.is_valid(args)
        assert fast(args) == valid, args
        agree += valid
    assert 10 < agree < 2990  # both verdicts occur


def test_a_remote_ref_is_never_fetched() -> None:
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        srv.settimeout(0.3)
        port = srv.getsockname()[1]
        schema = {"type": "object", "properties": {"a": {"$ref": f"http://127.0.0.1:{port}/s.json"}}}
        assert _fast_validator(schema) is None  # python-jsonschema alone then decides
        with pytest.raises(TimeoutError):
            srv.accept()
