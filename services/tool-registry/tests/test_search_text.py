"""Tool text for search: identifiers split, tokens normalised, schema parameters included."""

from __future__ import annotations

from warden_registry.search.lexical import Bm25
from warden_registry.search.text import describe_tool, lexical_tokens, split_identifier


def test_split_identifier_handles_snake_camel_kebab_and_acronyms() -> None:
    assert split_identifier("get_stock_price_by_date") == "get stock price by date"
    assert split_identifier("npmLicenseCompatibility") == "npm License Compatibility"
    assert split_identifier("lol-summoner-search") == "lol summoner search"
    assert split_identifier("HTMLToMarkdown") == "HTML To Markdown"


def test_lexical_tokens_lowercase_stem_plurals_and_drop_stop_words() -> None:
    assert lexical_tokens("Get the Stock Prices of companies") == ["stock", "price", "company"]
    assert lexical_tokens("searching files") == ["search", "file"]


def test_lexical_tokens_index_cjk_characters_and_bigrams() -> None:
    tokens = lexical_tokens("微博热搜 weibo")
    assert {"微", "博", "微博", "热搜"} <= set(tokens)
    assert "weibo" in tokens


def test_parameters_descriptions_and_enums_reach_both_texts() -> None:
    schema = {
        "type": "object",
        "properties": {
            "statement_type": {"type": "string", "enum": ["income", "balance", "cash"]},
            "ticker": {"type": "string", "description": "Stock symbol"},
            "filters": {"type": "array", "items": {"type": "object", "properties": {"region": {"description": "ISO"}}}},
        },
    }
    text = describe_tool("investor__get_financial_statements", "", schema)
    assert text.name_words == "get financial statements"
    assert "balance" in text.lexical()
    assert "symbol" in text.lexical()
    passage = text.passage()
    assert passage.startswith("get financial statements")
    assert "ticker: Stock symbol" in passage
    assert "filters region: ISO" in passage


def test_describe_tool_survives_schemas_that_are_not_objects() -> None:
    schemas: list[object] = [None, [], "x", {"properties": ["a"]}, {"properties": {"a": "not a dict"}}]
    for schema in schemas:
        text = describe_tool("t", None, schema)
        assert text.passage().startswith("t")


def test_bm25_ranks_the_document_with_the_rarer_matching_term_first() -> None:
    bm = Bm25()
    bm.add(0, lexical_tokens("weather forecast for a city"))
    bm.add(1, lexical_tokens("city guide and city map"))
    bm.add(2, lexical_tokens("stock price for a city company"))
    scores = bm.scores(lexical_tokens("city weather"), 3)
    assert scores.argmax() == 0
    assert (scores > 0).all()


def test_bm25_replace_and_remove_forget_the_old_text() -> None:
    bm = Bm25()
    bm.add(0, ["alpha", "beta"])
    bm.add(1, ["gamma"])
    bm.add(0, ["delta"])
    assert bm.scores(["alpha"], 2).tolist() == [0.0, 0.0]
    assert bm.scores(["delta"], 2)[0] > 0
    bm.remove(0)
    assert len(bm) == 1
    assert bm.scores(["delta"], 2).tolist() == [0.0, 0.0]
    bm.remove(0)  # twice is harmless
