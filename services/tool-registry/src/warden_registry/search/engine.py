"""The shape `warden_registry.searching` plugs in: `create_engine().index(docs).search(...)`.

One HybridIndex lives as long as the engine; `index(docs)` brings it in line with a new
catalog snapshot (adds new and changed tools, removes gone ones), so a tool is embedded
once, when it first appears or its text changes, not once per snapshot; with `stored`
vectors (from Postgres) not even then. Both calls are CPU work: run them in a worker
thread (`anyio.to_thread.run_sync`), not on the event loop.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Literal, Protocol

from warden_registry.search.embedders import (
    Embedder,
    EmbedderStatus,
    EmbedderUnavailable,
    load_embedder,
    vector_from_bytes,
    vector_to_bytes,
)
from warden_registry.search.index import DEFAULT_DENSE_WEIGHT, HybridIndex, SearchStatus, Vector
from warden_registry.search.text import describe_tool

__all__ = ["HybridEngine", "create_engine"]


class _Doc(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def input_schema(self) -> Mapping[str, Any]: ...


def _fingerprint(doc: _Doc) -> str:
    body = json.dumps([doc.name, doc.description, doc.input_schema], sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()


class _Snapshot:
    def __init__(self, engine: HybridEngine) -> None:
        self._engine = engine

    def search(self, query: str, k: int, allowed: Collection[str]) -> list[str]:
        with self._engine.lock:
            return [hit.tool.id for hit in self._engine.hybrid.search(query, k, allowed=allowed)]


class HybridEngine:
    """BM25 + dense search over the registry's tools; `mode`/`reason` say if it is degraded."""

    def __init__(
        self, embedder: Embedder | None, status: EmbedderStatus, *, dense_weight: float = DEFAULT_DENSE_WEIGHT
    ) -> None:
        self.lock = threading.Lock()
        self.hybrid = HybridIndex(embedder, status, dense_weight=dense_weight)
        self._fingerprints: dict[str, str] = {}
        self._computed: dict[str, bytes] = {}

    @property
    def status(self) -> SearchStatus:
        return self.hybrid.status

    @property
    def mode(self) -> Literal["hybrid", "lexical"]:
        return self.hybrid.status.mode

    @property
    def reason(self) -> str:
        return self.hybrid.status.reason

    def index(self, docs: Sequence[_Doc], stored: Mapping[str, bytes] | None = None) -> _Snapshot:
        """Bring the index in line with `docs`. `stored` maps a tool name to its persisted vector
        (`vector_to_bytes`); tools without one are embedded outside the lock (searches go on
        meanwhile) and their vectors wait in `take_computed()` for the caller to persist.
        """
        with self.lock:
            seen = {doc.name: _fingerprint(doc) for doc in docs}
            missing = set(self.hybrid.missing_vectors())
            changed = [d for d in docs if self._fingerprints.get(d.name) != seen[d.name] or d.name in missing]
            gone = self._fingerprints.keys() - seen.keys()
        embedder = self.hybrid.embedder
        vectors: list[Vector | None] = [None] * len(changed)
        if embedder is not None:
            for i, doc in enumerate(changed):
                blob = (stored or {}).get(doc.name)
                if blob is not None:
                    vectors[i] = vector_from_bytes(blob, embedder.dim)
            todo = [i for i, v in enumerate(vectors) if v is None]
            try:
                fresh = embedder.embed(
                    [
                        describe_tool(changed[i].name, changed[i].description, changed[i].input_schema).passage()
                        for i in todo
                    ]
                )
            except EmbedderUnavailable as e:
                fresh = None  # added without vectors (lexical for them) until a later index() call
                with self.lock:
                    self.hybrid.report_failure(str(e))
            if fresh is not None:
                if todo:
                    with self.lock:
                        self.hybrid.report_recovered()
                for j, i in enumerate(todo):
                    vectors[i] = fresh[j]
                    self._computed[changed[i].name] = vector_to_bytes(fresh[j])
        with self.lock:
            for name in gone:
                self.hybrid.remove(name)
            self.hybrid.add_many(
                [(d.name, d.name, d.description, d.input_schema) for d in changed], vectors, embed=False
            )
            self._fingerprints = seen
        return _Snapshot(self)

    def take_computed(self) -> dict[str, bytes]:
        """Vectors embedded since the last call, by tool name, to persist (`tools.embedding`)."""
        with self.lock:
            computed, self._computed = self._computed, {}
        return computed


def create_engine(kind: Literal["local", "openai", "none"] = "local", **options: Any) -> HybridEngine:
    """An engine with the configured embedder; lexical-only (and saying so) if it cannot load."""
    embedder, status = load_embedder(kind, **options)
    return HybridEngine(embedder, status)
