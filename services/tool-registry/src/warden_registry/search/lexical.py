"""BM25 over integer slots, updated in place as tools come and go.

Documents live in slots (the same slot numbers as the dense matrix rows). Postings are
kept per term as `{slot: term frequency}` and frozen into numpy arrays the first time a
term is searched after a change, so a search costs one vectorised pass per query term.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["Bm25"]

Scores = npt.NDArray[np.float32]


class Bm25:
    """Okapi BM25 (with the +1 idf that stays positive for common terms)."""

    def __init__(self, k1: float = 1.2, b: float = 0.75) -> None:
        self.k1 = k1
        self.b = b
        self._postings: dict[str, dict[int, int]] = {}
        self._frozen: dict[str, tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]] = {}
        self._terms: dict[int, tuple[str, ...]] = {}
        self._lengths = np.zeros(0, dtype=np.float32)
        self._total_length = 0

    def __len__(self) -> int:
        return len(self._terms)

    def _grow(self, slot: int) -> None:
        if slot >= len(self._lengths):
            grown = np.zeros(max(slot + 1, 2 * len(self._lengths), 64), dtype=np.float32)
            grown[: len(self._lengths)] = self._lengths
            self._lengths = grown

    def add(self, slot: int, tokens: Sequence[str]) -> None:
        """Index `tokens` under `slot`, replacing what the slot held."""
        if slot in self._terms:
            self.remove(slot)
        self._grow(slot)
        counts = Counter(tokens)
        for term, tf in counts.items():
            self._postings.setdefault(term, {})[slot] = tf
            self._frozen.pop(term, None)
        self._terms[slot] = tuple(counts)
        self._lengths[slot] = len(tokens)
        self._total_length += len(tokens)

    def remove(self, slot: int) -> None:
        terms = self._terms.pop(slot, None)
        if terms is None:
            return
        for term in terms:
            posting = self._postings[term]
            del posting[slot]
            if not posting:
                del self._postings[term]
            self._frozen.pop(term, None)
        self._total_length -= int(self._lengths[slot])
        self._lengths[slot] = 0

    def _posting(self, term: str) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]] | None:
        frozen = self._frozen.get(term)
        if frozen is None:
            posting = self._postings.get(term)
            if not posting:
                return None
            frozen = (
                np.fromiter(posting.keys(), dtype=np.int64, count=len(posting)),
                np.fromiter(posting.values(), dtype=np.float32, count=len(posting)),
            )
            self._frozen[term] = frozen
        return frozen

    def scores(self, query_tokens: Sequence[str], size: int) -> Scores:
        """BM25 score of every slot below `size` (0 where no query term occurs)."""
        out = np.zeros(size, dtype=np.float32)
        n = len(self._terms)
        if n == 0:
            return out
        avg = self._total_length / n or 1.0
        for term in dict.fromkeys(query_tokens):
            posting = self._posting(term)
            if posting is None:
                continue
            slots, tf = posting
            df = len(slots)
            idf = np.float32(np.log(1.0 + (n - df + 0.5) / (df + 0.5)))
            norm = self.k1 * (1.0 - self.b + self.b * self._lengths[slots] / avg)
            out[slots] += idf * tf * (self.k1 + 1.0) / (tf + norm)
        return out
