"""The pure rules, without a database or a bus: operation facts, names, descriptions, schema
checks, grant matching and the access snapshot, the lexical search."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from warden_common.contracts import UpstreamTool
from warden_common.errors import Forbidden, NotFound
from warden_registry.access import Snapshot
from warden_registry.catalog import check_schema, classify, clean_description, pin_hash, valid_mcp_name
from warden_registry.searching import LexicalEngine, SearchDoc, load_engine
from warden_registry.service import _by_name


@pytest.mark.parametrize(
    ("name", "description", "annotations", "fact"),
    [
        ("anything", None, {"readOnlyHint": True}, "read"),
        ("get_page", None, {"readOnlyHint": False}, "write"),
        ("list_pages", None, {"destructiveHint": True}, "write"),
        ("getPage", None, None, "read"),
        ("search-issues", None, None, "read"),
        ("listUsers", None, None, "read"),
        ("describe_table", None, None, "read"),
        ("create_issue", None, None, "write"),
        ("sendMessage", None, None, "write"),
        ("get_or_create_user", None, None, "write"),  # any write verb wins
        ("post_comment", None, None, "write"),
        ("frobnicate", None, None, "write"),  # unknown: fail safe
        ("frobnicate", "Returns the frob.", None, "write"),
        ("weather", "Gets the weather for a city.", None, "read"),
        ("weather", "Fetches the forecast.", None, "read"),
        ("notes", "Deletes all notes.", None, "write"),
    ],
)
def test_operation_facts(name: str, description: str | None, annotations: dict[str, Any] | None, fact: str) -> None:
    assert classify(name, description, annotations) == fact


def test_mcp_name_rules() -> None:
    assert valid_mcp_name("a") and valid_mcp_name("notion__search.v2-beta") and valid_mcp_name("x" * 128)
    for bad in ("", "x" * 129, "has space", "naïve", "semi;colon", "slash/name", "tab\tname"):
        assert not valid_mcp_name(bad), bad


def test_descriptions_are_cleaned_and_capped() -> None:
    assert clean_description(None) == ""
    assert clean_description("a\x00b\x07c\u200bd\u202ee\ufeff") == "abcde"
    assert clean_description("one\r\n\n\n\n\ntwo  \nthree\tfour") == "one\n\ntwo\nthree\tfour"
    capped = clean_description("y" * 10_000, cap=2000)
    assert len(capped) == 2000 and capped.endswith("…")


def test_schema_checks() -> None:
    assert check_schema({"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]})
    assert check_schema({"type": "object"}) and check_schema({"properties": {}})
    for bad in (
        {"type": "object", "properties": 5},
        {"type": "array", "items": {"type": "string"}},
        {"type": "object", "required": "q"},
        {"type": "object", "properties": {"a": {"type": "strnig"}}},
        {"type": "object", "minProperties": -1},
        [],
        "object",
    ):
        assert not check_schema(bad), bad


def test_pins_change_with_description_or_schema_only() -> None:
    base = pin_hash("t", "d", {"type": "object"})
    assert base == pin_hash("t", "d", {"type": "object"})
    assert base != pin_hash("t", "d2", {"type": "object"})
    assert base != pin_hash("t", "d", {"type": "object", "properties": {}})
    assert pin_hash("t", "d", {"a": 1, "b": 2}) == pin_hash("t", "d", {"b": 2, "a": 1})


def test_duplicate_upstream_names_keep_the_first() -> None:
    listing = [UpstreamTool(name="a", description="1"), UpstreamTool(name="b"), UpstreamTool(name="a", description="2")]
    by, dupes = _by_name(listing)
    assert list(by) == ["a", "b"] and by["a"].description == "1" and dupes == ["a"]


def _row(name: str, **kw: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    row = {
        "name": name,
        "connector": name.split("__")[0],
        "alias": name.split("__")[0],
        "upstream_name": name.split("__")[1],
        "description": f"{name} does things",
        "input_schema": {"type": "object"},
        "annotations": None,
        "operation": "read",
        "auto_approve": True,
        "deferred": False,
        "favorite": False,
        "enabled": True,
        "schema_valid": True,
        "pin_hash": "x",
        "held": False,
        "missing": False,
        "drift": None,
        "registered_by": "admin",
        "created_at": now,
        "updated_at": now,
    }
    return row | kw


def _grant(profile: str, tool: str, read_only: bool = False) -> dict[str, Any]:
    return {"profile": profile, "tool": tool, "read_only": read_only}


def test_snapshot_fails_closed() -> None:
    snap = Snapshot.build(
        [
            _row("n__get"),
            _row("n__put", operation="write"),
            _row("n__off", enabled=False),
            _row("n__held", held=True, drift={"description": "new", "input_schema": {"type": "object"}}),
            _row("n__gone", missing=True),
            _row("n__later", deferred=True),
            _row("m__get"),
        ],
        [
            _grant("all", "n__*"),
            _grant("ro", "n__*", read_only=True),
            _grant("one", "n__get"),
            _grant("q", "n__g?t"),
            _grant("mixed", "n__*", read_only=True),
            _grant("mixed", "n__put"),
        ],
    )
    names = lambda p: [t.name for t in snap.cut(p).answer.tools]  # noqa: E731
    assert names("nobody") == []
    assert names("all") == ["n__get", "n__put", "tool_search"]
    assert snap.cut("all").answer.has_deferred
    assert names("ro") == ["n__get", "tool_search"]
    assert names("one") == ["n__get"] and names("q") == ["n__get"]
    assert names("mixed") == ["n__get", "n__put", "tool_search"]  # grants add up
    assert snap.resolve("all", "n__later").deferred
    for profile, tool, error in [
        ("nobody", "n__get", Forbidden),
        ("all", "m__get", Forbidden),
        ("all", "n__unknown", Forbidden),
        ("ro", "n__put", Forbidden),
        ("all", "n__off", Forbidden),
        ("all", "n__held", Forbidden),
        ("all", "n__gone", NotFound),
    ]:
        with pytest.raises(error):
            snap.resolve(profile, tool)


def test_drift_not_held_serves_the_current_listing() -> None:
    drift = {"description": "new text", "input_schema": {"type": "object", "properties": 5}, "pin_hash": "y"}
    snap = Snapshot.build([_row("n__t", drift=drift)], [_grant("p", "n__t")])
    r = snap.resolve("p", "n__t")
    assert r.description == "new text" and r.schema_valid is False


def test_lexical_search_ranks_and_filters() -> None:
    docs = [
        SearchDoc("n__send_invoice", "Send an invoice to a customer by email.", {"type": "object"}),
        SearchDoc("n__refund_payment", "Refund a card payment.", {"type": "object"}),
        SearchDoc("n__list_customers", "List customers.", {"type": "object"}),
    ]
    index = LexicalEngine().index(docs)
    everyone = {d.name for d in docs}
    assert index.search("refund a payment", 2, everyone)[0] == "n__refund_payment"
    assert index.search("email invoices", 5, everyone)[0] == "n__send_invoice"
    assert index.search("refund a payment", 5, {"n__list_customers"}) == []
    assert index.search("zzz", 5, everyone) == []


def test_engine_falls_back_to_lexical() -> None:
    assert load_engine("lexical").mode == "lexical"
    assert load_engine("auto").mode in ("lexical", "hybrid")
