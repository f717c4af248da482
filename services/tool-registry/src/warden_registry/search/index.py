"""HybridIndex: BM25 and dense vectors over the same slots, cut to the allowed set, fused.

Search, in order:
1. `allowed` (the tool ids the caller's profile may see) becomes a list of slots. Ids the
   index does not hold are ignored. Nothing outside this list is ever scored or returned,
   so the k results come from the allowed set only.
2. BM25 scores and cosine similarities of those slots (the query embedded once, cached).
3. Fusion: each score list is standardised over the allowed slots (z-score) and mixed as
   `w * dense + (1 - w) * lexical`. Min-max and rank fusion (RRF) were measured too and
   did worse: RRF scored below dense alone (bench/search). `w` was tuned on the dev split.
4. Top k by `argpartition`.

Lexical-only (no embedder, or the embedder failed for this query) returns tools with a
positive BM25 score only, and `status` says search is degraded, with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from warden_registry.search.embedders import Embedder, EmbedderStatus, EmbedderUnavailable
from warden_registry.search.lexical import Bm25
from warden_registry.search.text import ToolText, describe_tool, lexical_tokens

__all__ = ["DEFAULT_DENSE_WEIGHT", "Hit", "HybridIndex", "SearchStatus", "ToolEntry"]

log = logging.getLogger(__name__)

# Tuned on the dev split of bench/search/queries.jsonl (z-score fusion); see bench/README.md.
DEFAULT_DENSE_WEIGHT = 0.85
_ALLOWED_CACHE = 64
Method = Literal["hybrid", "lexical", "dense"]
Vector = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class ToolEntry:
    """A tool as search returns it."""

    id: str
    name: str
    description: str
    input_schema: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Hit:
    tool: ToolEntry
    score: float
    lexical: float
    dense: float | None


@dataclass(frozen=True, slots=True)
class SearchStatus:
    mode: Literal["hybrid", "lexical"]
    degraded: bool
    reason: str = ""
    model_id: str | None = None
    tools: int = 0
    missing_vectors: int = 0


@dataclass(slots=True)
class _Slots:
    ids: list[str | None] = field(default_factory=list)
    entries: list[ToolEntry | None] = field(default_factory=list)
    free: list[int] = field(default_factory=list)
    of: dict[str, int] = field(default_factory=dict)


def _zscore(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    std = float(x.std())
    if std < 1e-9:
        return np.zeros_like(x)
    return (x - x.mean()) / np.float32(std)


class HybridIndex:
    """The searchable set of registered tools. Not thread-safe: one writer, or a lock around it."""

    def __init__(
        self,
        embedder: Embedder | None,
        status: EmbedderStatus | None = None,
        *,
        dense_weight: float = DEFAULT_DENSE_WEIGHT,
    ) -> None:
        self.embedder = embedder
        self.dense_weight = dense_weight
        self._load_status = status or EmbedderStatus(
            "custom" if embedder else "none",
            degraded=embedder is None,
            reason="" if embedder else "no embedder",
            model_id=embedder.model_id if embedder else None,
        )
        self._runtime_failure = ""
        self._bm25 = Bm25()
        self._slots = _Slots()
        self._dim = embedder.dim if embedder else 0
        self._vectors = np.zeros((0, self._dim), dtype=np.float32)
        self._has_vector = np.zeros(0, dtype=bool)
        self._texts: list[ToolText | None] = []
        self._generation = 0
        self._allowed_cache: dict[frozenset[str], tuple[int, npt.NDArray[np.int64]]] = {}

    # -- state -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._slots.of)

    def __contains__(self, tool_id: object) -> bool:
        return tool_id in self._slots.of

    @property
    def status(self) -> SearchStatus:
        degraded = self.embedder is None or bool(self._runtime_failure)
        reason = self._load_status.reason if self.embedder is None else self._runtime_failure
        live = self._has_vector[[s for s in self._slots.of.values()]] if self._slots.of else self._has_vector[:0]
        return SearchStatus(
            mode="lexical" if degraded else "hybrid",
            degraded=degraded,
            reason=reason,
            model_id=self.embedder.model_id if self.embedder else None,
            tools=len(self),
            missing_vectors=int(len(live) - live.sum()) if self.embedder else 0,
        )

    def _slot_for(self, tool_id: str) -> int:
        slot = self._slots.of.get(tool_id)
        if slot is not None:
            return slot
        if self._slots.free:
            slot = self._slots.free.pop()
            self._slots.ids[slot] = tool_id
        else:
            slot = len(self._slots.ids)
            self._slots.ids.append(tool_id)
            self._slots.entries.append(None)
            self._texts.append(None)
        if slot >= len(self._has_vector):
            capacity = max(64, 2 * len(self._has_vector), slot + 1)
            vectors = np.zeros((capacity, self._dim), dtype=np.float32)
            vectors[: len(self._vectors)] = self._vectors
            has = np.zeros(capacity, dtype=bool)
            has[: len(self._has_vector)] = self._has_vector
            self._vectors, self._has_vector = vectors, has
        self._slots.of[tool_id] = slot
        self._generation += 1
        return slot

    # -- writes ------------------------------------------------------------------------------

    def add(
        self,
        tool_id: str,
        name: str,
        description: str,
        input_schema: Mapping[str, Any],
        *,
        vector: npt.NDArray[np.floating] | None = None,
    ) -> None:
        """Add or replace one tool. Pass `vector` (from storage) to skip embedding it."""
        self.add_many([(tool_id, name, description, input_schema)], None if vector is None else [vector])

    def add_many(
        self,
        tools: Sequence[tuple[str, str, str, Mapping[str, Any]]],
        vectors: Sequence[npt.NDArray[np.floating] | None] | None = None,
        *,
        embed: bool = True,
    ) -> dict[str, Vector]:
        """Add or replace tools (id, name, description, input schema); embed those without a
        stored vector in batches (unless `embed=False`: they wait for `embed_missing()`).
        Returns the vectors it computed, by id, for the caller to persist.
        """
        if vectors is not None and len(vectors) != len(tools):
            raise ValueError("vectors must match tools one to one")
        to_embed: list[int] = []
        for i, (tool_id, name, description, schema) in enumerate(tools):
            text = describe_tool(name, description, schema)
            slot = self._slot_for(tool_id)
            self._slots.entries[slot] = ToolEntry(tool_id, name, description, schema)
            self._texts[slot] = text
            self._bm25.add(slot, text.lexical())
            self._has_vector[slot] = False
            stored = vectors[i] if vectors is not None else None
            if stored is not None and self.embedder is not None:
                if np.shape(stored) != (self._dim,):
                    raise ValueError(f"vector of {tool_id} has shape {np.shape(stored)}, expected ({self._dim},)")
                self._vectors[slot] = stored
                self._has_vector[slot] = True
            elif self.embedder is not None:
                to_embed.append(slot)
        return self._embed_slots(to_embed) if embed else {}

    def embed_missing(self) -> dict[str, Vector]:
        """Embed the tools that have no vector (added while the embedder was failing)."""
        missing = [s for s in self._slots.of.values() if not self._has_vector[s]]
        return self._embed_slots(missing)

    def _embed_slots(self, slots: list[int]) -> dict[str, Vector]:
        if not slots or self.embedder is None:
            return {}
        try:
            computed = self.embedder.embed([self._text(s).passage() for s in slots])
        except EmbedderUnavailable as e:
            self._fail(str(e))
            return {}
        self._runtime_failure = ""
        self._vectors[slots] = computed
        self._has_vector[slots] = True
        return {self._slots.ids[s]: computed[j] for j, s in enumerate(slots)}  # type: ignore[misc]

    def remove(self, tool_id: str) -> bool:
        slot = self._slots.of.pop(tool_id, None)
        if slot is None:
            return False
        self._bm25.remove(slot)
        self._slots.ids[slot] = None
        self._slots.entries[slot] = None
        self._texts[slot] = None
        self._generation += 1
        self._has_vector[slot] = False
        self._vectors[slot] = 0.0
        self._slots.free.append(slot)
        return True

    def vector(self, tool_id: str) -> Vector | None:
        slot = self._slots.of.get(tool_id)
        if slot is None or not self._has_vector[slot]:
            return None
        return self._vectors[slot].copy()

    def missing_vectors(self) -> list[str]:
        """Ids of the tools that have no vector yet (the embedder failed when they came)."""
        if self.embedder is None:
            return []
        return [tool_id for tool_id, slot in self._slots.of.items() if not self._has_vector[slot]]

    def report_failure(self, reason: str) -> None:
        """Mark search degraded (an embedding attempt made outside the index failed)."""
        self._fail(reason)

    def report_recovered(self) -> None:
        """Clear a failure reported earlier (an embedding attempt outside the index worked)."""
        if self._runtime_failure:
            log.info("tool search embedder recovered")
        self._runtime_failure = ""

    def _fail(self, reason: str) -> None:
        if reason != self._runtime_failure:
            log.warning("tool search degraded to lexical only: %s", reason)
        self._runtime_failure = reason

    # -- search ------------------------------------------------------------------------------

    def allowed_slots(self, allowed: Collection[str]) -> npt.NDArray[np.int64]:
        """The slots of the allowed ids this index holds (unknown ids are skipped), ascending.

        A `frozenset` is remembered (by identity and the index's generation), so a caller that
        keeps one frozenset per profile pays for the lookup once per change of the index.
        """
        key = allowed if isinstance(allowed, frozenset) else None
        if key is not None:
            cached = self._allowed_cache.get(key)
            if cached is not None and cached[0] == self._generation:
                return cached[1]
        of = self._slots.of
        if isinstance(allowed, (set, frozenset, dict)) and len(allowed) >= len(of):
            found = [s for tool_id, s in of.items() if tool_id in allowed]
        else:
            found = [s for s in map(of.get, allowed) if s is not None]
        mask = np.zeros(len(self._slots.ids), dtype=bool)
        mask[found] = True
        slots = np.flatnonzero(mask)
        if key is not None:
            if len(self._allowed_cache) >= _ALLOWED_CACHE:
                self._allowed_cache.pop(next(iter(self._allowed_cache)))
            self._allowed_cache[key] = (self._generation, slots)
        return slots

    def search(self, query: str, k: int, *, allowed: Collection[str], method: Method = "hybrid") -> list[Hit]:
        """The best `k` tools for `query` among `allowed`, best first."""
        if k <= 0 or not query.strip():
            return []
        slots = self.allowed_slots(allowed)
        if len(slots) == 0:
            return []
        size = len(self._slots.ids)
        lexical = self._bm25.scores(lexical_tokens(query), size)[slots]
        dense: npt.NDArray[np.float32] | None = None
        if method != "lexical" and self.embedder is not None:
            dense = self._dense(query, slots)
        if dense is None or method == "lexical":
            keep = np.flatnonzero(lexical > 0)
            order = keep[np.argsort(-lexical[keep], kind="stable")][:k]
            return [self._hit(int(slots[i]), float(lexical[i]), float(lexical[i]), None) for i in order]
        if method == "dense":
            fused = dense
        else:
            fused = self.dense_weight * _zscore(dense) + (1.0 - self.dense_weight) * _zscore(lexical)
        top = np.argpartition(-fused, k - 1)[:k] if k < len(fused) else np.arange(len(fused))
        top = top[np.argsort(-fused[top], kind="stable")]
        return [self._hit(int(slots[i]), float(fused[i]), float(lexical[i]), float(dense[i])) for i in top]

    def _dense(self, query: str, slots: npt.NDArray[np.int64]) -> npt.NDArray[np.float32] | None:
        assert self.embedder is not None
        try:
            q = self.embedder.embed_query(query)
        except EmbedderUnavailable as e:
            self._fail(str(e))
            return None
        self._runtime_failure = ""
        # einsum, not BLAS: a multi-threaded sgemv spins its threads on a busy machine and
        # took 2-3x the wall time of this single-threaded loop (bench/search, 10k tools)
        if len(slots) * 4 < len(self._slots.ids):
            scores = np.einsum("ij,j->i", self._vectors[slots], q)
        else:
            scores = np.einsum("ij,j->i", self._vectors[: len(self._slots.ids)], q)[slots]
        return np.asarray(scores, dtype=np.float32)

    def _text(self, slot: int) -> ToolText:
        text = self._texts[slot]
        assert text is not None, "a live slot has its text"
        return text

    def _hit(self, slot: int, score: float, lexical: float, dense: float | None) -> Hit:
        entry = self._slots.entries[slot]
        assert entry is not None
        return Hit(entry, score, lexical, dense)
