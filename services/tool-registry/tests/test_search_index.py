"""HybridIndex: the allowed set, fusion, stored vectors, and degrading to lexical out loud.

The embedder here is a fake (bag-of-words hashed into 64 dimensions): these tests are about
the index's own logic. The real model is tested in test_search_model.py.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from warden_registry.search import (
    EmbedderStatus,
    EmbedderUnavailable,
    HybridEngine,
    HybridIndex,
    load_embedder,
    vector_from_bytes,
    vector_to_bytes,
)
from warden_registry.search.text import lexical_tokens

TOOLS = [
    ("weather__get_weather", "get_weather", "Current weather and forecast for a city", {}),
    ("weather__get_alerts", "get_alerts", "Severe weather alerts for a region", {}),
    ("git__git_commit", "git_commit", "Record changes to the repository", {}),
    ("git__git_log", "git_log", "Show the commit logs", {}),
    ("fs__read_file", "read_file", "Read a file from disk", {"properties": {"path": {"description": "file path"}}}),
    ("fs__write_file", "write_file", "Write a file to disk", {"properties": {"path": {"description": "file path"}}}),
    ("chess__make_move", "make_move", "Make a chess move in algebraic notation", {}),
    ("stocks__price", "get_price", "Stock price for a ticker symbol", {}),
]
IDS = [t[0] for t in TOOLS]


class HashEmbedder:
    """Deterministic bag-of-words vectors: texts sharing words are close."""

    model_id = "hash-64"
    dim = 64

    def __init__(self) -> None:
        self.embedded: list[str] = []
        self.fail_queries = False

    def _one(self, text: str) -> np.ndarray:
        v = np.zeros(self.dim, dtype=np.float32)
        for token in lexical_tokens(text):
            v[int(hashlib.md5(token.encode()).hexdigest(), 16) % self.dim] += 1.0
        n = np.linalg.norm(v)
        return v / n if n else v

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.embedded.extend(texts)
        return np.stack([self._one(t) for t in texts]) if texts else np.zeros((0, self.dim), np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        if self.fail_queries:
            raise EmbedderUnavailable("embeddings endpoint answered HTTP 503")
        return self._one(text)


def make_index() -> tuple[HybridIndex, HashEmbedder]:
    embedder = HashEmbedder()
    index = HybridIndex(embedder)
    index.add_many(TOOLS)
    return index, embedder


def test_search_never_returns_a_tool_outside_the_allowed_set() -> None:
    index, _ = make_index()
    rng = random.Random(1)
    queries = ["weather in paris", "commit my work", "read a file", "chess", "price", "zzz unknown", "a"]
    for _ in range(300):
        allowed = set(rng.sample(IDS, rng.randint(0, len(IDS))))
        allowed |= {"ghost__not_indexed"}
        for method in ("hybrid", "lexical", "dense"):
            hits = index.search(rng.choice(queries), rng.randint(1, 12), allowed=allowed, method=method)
            assert {h.tool.id for h in hits} <= allowed - {"ghost__not_indexed"}


def test_k_results_come_from_the_allowed_set_when_better_matches_are_hidden() -> None:
    index, _ = make_index()
    allowed = {"git__git_commit", "git__git_log", "chess__make_move"}
    hits = index.search("weather forecast for a city", 3, allowed=allowed)
    assert len(hits) == 3
    assert {h.tool.id for h in hits} == allowed


def test_hybrid_puts_the_tool_matching_both_signals_first() -> None:
    index, _ = make_index()
    hits = index.search("weather forecast in a city", 3, allowed=set(IDS))
    assert hits[0].tool.id == "weather__get_weather"
    assert hits[0].score >= hits[1].score >= hits[2].score
    assert hits[0].dense is not None and hits[0].lexical > 0


def test_frozenset_allowed_is_recomputed_after_a_slot_is_reused() -> None:
    index, _ = make_index()
    only_log = frozenset({"git__git_log"})
    assert [h.tool.id for h in index.search("commit logs", 5, allowed=only_log)] == ["git__git_log"]
    index.remove("git__git_log")
    index.add("new__commit_logs", "commit_logs", "Show the commit logs", {})  # takes the freed slot
    assert index.search("commit logs", 5, allowed=only_log) == []


def test_missing_model_degrades_to_lexical_and_reports_it(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        embedder, status = load_embedder("local", model_dir=tmp_path)
    assert embedder is None
    assert status.degraded and status.mode == "lexical"
    assert "model.safetensors" in status.reason
    assert "degraded to lexical" in caplog.text
    index = HybridIndex(embedder, status)
    index.add_many(TOOLS)
    assert index.status.degraded and index.status.reason == status.reason
    hits = index.search("read a file from disk", 3, allowed=set(IDS))
    assert hits[0].tool.id == "fs__read_file"
    assert all(h.dense is None and h.lexical > 0 for h in hits)


def test_an_embedder_failing_at_query_time_falls_back_to_lexical_then_recovers() -> None:
    index, embedder = make_index()
    embedder.fail_queries = True
    hits = index.search("chess move", 3, allowed=set(IDS))
    assert [h.tool.id for h in hits] == ["chess__make_move"]
    assert index.status.degraded and "503" in index.status.reason
    embedder.fail_queries = False
    assert len(index.search("chess move", 3, allowed=set(IDS))) == 3
    assert not index.status.degraded


def test_stored_vectors_are_used_and_only_new_tools_are_embedded() -> None:
    first, _ = make_index()
    stored = {tool_id: vector_to_bytes(first.vector(tool_id)) for tool_id in IDS}  # type: ignore[arg-type]
    embedder = HashEmbedder()
    index = HybridIndex(embedder)
    new: tuple[str, str, str, dict[str, object]] = ("calc__add", "add", "Add two numbers", {})
    vectors = [vector_from_bytes(stored[t[0]], 64) for t in TOOLS] + [None]
    computed = index.add_many([*TOOLS, new], vectors)
    assert list(computed) == ["calc__add"]
    assert len(embedder.embedded) == 1
    assert index.status.missing_vectors == 0


def test_vector_bytes_reject_the_wrong_dimension() -> None:
    with pytest.raises(ValueError):
        vector_from_bytes(np.zeros(3, np.float32).tobytes(), 4)


@dataclass(frozen=True)
class Doc:
    name: str
    description: str
    input_schema: dict[str, object]


DOCS = [Doc(t[0], t[2], {}) for t in TOOLS]


def test_engine_snapshots_embed_a_tool_once_and_drop_removed_tools() -> None:
    embedder = HashEmbedder()
    engine = HybridEngine(embedder, EmbedderStatus("custom", degraded=False))
    engine.index(DOCS)
    assert len(embedder.embedded) == len(TOOLS)
    assert set(engine.take_computed()) == set(IDS) and engine.take_computed() == {}
    engine.index([*DOCS[1:], Doc("weather__get_weather", "Weather for a city, now with radar", {})])
    assert len(embedder.embedded) == len(TOOLS) + 1
    snapshot = engine.index(DOCS[1:])
    assert "weather__get_weather" not in snapshot.search("weather", 10, set(IDS))
    assert engine.mode == "hybrid" and engine.reason == ""


def test_engine_uses_stored_vectors_instead_of_embedding() -> None:
    first = HybridEngine(HashEmbedder(), EmbedderStatus("custom", degraded=False))
    first.index(DOCS)
    stored = first.take_computed()
    embedder = HashEmbedder()
    engine = HybridEngine(embedder, EmbedderStatus("custom", degraded=False))
    snapshot = engine.index(DOCS, stored)
    assert embedder.embedded == []
    assert snapshot.search("commit logs", 1, set(IDS)) == ["git__git_log"]


def test_engine_keeps_tools_searchable_when_embedding_fails_and_retries_later() -> None:
    embedder = HashEmbedder()
    engine = HybridEngine(embedder, EmbedderStatus("custom", degraded=False))
    broken = embedder.embed
    embedder.embed = lambda texts: (_ for _ in ()).throw(EmbedderUnavailable("endpoint unreachable"))  # type: ignore[method-assign]
    snapshot = engine.index(DOCS)
    assert engine.mode == "lexical" and "unreachable" in engine.reason
    assert engine.status.missing_vectors == len(DOCS)
    assert snapshot.search("read a file from disk", 1, set(IDS)) == ["fs__read_file"]
    embedder.embed = broken  # type: ignore[method-assign]
    engine.index(DOCS)
    assert engine.status.missing_vectors == 0 and set(engine.take_computed()) == set(IDS)
    assert engine.mode == "hybrid" and engine.reason == ""
