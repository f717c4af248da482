"""The shape `warden_registry.searching` plugs in: `create_engine().index(docs).search(...)`.

One HybridIndex lives as long as the engine; `index(docs)` brings it in line with a new
catalog snapshot (adds new and changed tools, removes gone ones), so a tool is embedded
once, when it first appears or its text changes, not once per snapshot.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Literal, Protocol

from warden_registry.search.embedders import Embedder, EmbedderStatus, load_embedder
from warden_registry.search.index import DEFAULT_DENSE_WEIGHT, HybridIndex, SearchStatus

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

    @property
    def status(self) -> SearchStatus:
        return self.hybrid.status

    @property
    def mode(self) -> Literal["hybrid", "lexical"]:
        return self.hybrid.status.mode

    @property
    def reason(self) -> str:
        return self.hybrid.status.reason

    def index(self, docs: Sequence[_Doc]) -> _Snapshot:
        with self.lock:
            seen: dict[str, str] = {}
            changed = []
            for doc in docs:
                fp = _fingerprint(doc)
                seen[doc.name] = fp
                if self._fingerprints.get(doc.name) != fp:
                    changed.append((doc.name, doc.name, doc.description, doc.input_schema))
            for gone in self._fingerprints.keys() - seen.keys():
                self.hybrid.remove(gone)
            self.hybrid.add_many(changed)
            self.hybrid.embed_missing()
            self._fingerprints = seen
        return _Snapshot(self)


def create_engine(kind: Literal["local", "openai", "none"] = "local", **options: Any) -> HybridEngine:
    """An engine with the configured embedder; lexical-only (and saying so) if it cannot load."""
    embedder, status = load_embedder(kind, **options)
    return HybridEngine(embedder, status)
