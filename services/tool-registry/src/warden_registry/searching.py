"""The registry's door to tool search: one small interface, two engines behind it.

    engine = load_engine("auto")      # the hybrid engine of `warden_registry.search` when it
                                      # is installed, else a plain lexical (BM25) scorer
    index = engine.index(docs)        # once per catalog snapshot; docs are SearchDoc
    names = index.search(query, k, allowed)   # best first, only names in `allowed`

The caller (the service) hands `allowed` = the tools the profile may use, so an index built
over the whole catalog never answers with a tool the profile may not see; the service
checks the answer against `allowed` once more anyway.

The hybrid engine plugs in by exposing `create_engine() -> Engine` (or an `Engine` class)
in `warden_registry.search` with this same `index(docs) -> Index` shape; until it does, or
when it cannot start (no model), search is lexical and `mode` says so.
"""

from __future__ import annotations

import importlib
import logging
import math
import re
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

__all__ = ["Engine", "Index", "LexicalEngine", "SearchDoc", "load_engine"]

log = logging.getLogger(__name__)
Mode = Literal["hybrid", "lexical"]


@dataclass(frozen=True, slots=True)
class SearchDoc:
    name: str
    description: str
    input_schema: dict[str, Any]


class Index(Protocol):
    def search(self, query: str, k: int, allowed: Collection[str]) -> list[str]: ...


class Engine(Protocol):
    mode: Mode
    reason: str

    def index(self, docs: Sequence[SearchDoc]) -> Index: ...


# -- the lexical fallback ----------------------------------------------------------------------

_TOKEN = re.compile(r"[a-z0-9]+")
_STOP = frozenset("a an and the to of or for in on by with from my me i is it be this that".split())


def tokens(text: str) -> list[str]:
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", text).replace("_", " ")
    out = []
    for t in _TOKEN.findall(text.lower()):
        if t in _STOP:
            continue
        out.append(t[:-1] if len(t) > 3 and t.endswith("s") and not t.endswith("ss") else t)
    return out


def doc_text(d: SearchDoc) -> str:
    props = d.input_schema.get("properties") if isinstance(d.input_schema, dict) else None
    params = ""
    if isinstance(props, dict):
        params = " ".join(
            f"{k} {v.get('description', '') if isinstance(v, dict) else ''}" for k, v in list(props.items())[:50]
        )
    # the tool's own name counts twice: it is the most telling text it has
    short = d.name.split("__", 1)[-1]
    return f"{short} {short} {d.description} {params}"


class _Bm25Index:
    K1 = 1.2
    B = 0.75

    def __init__(self, docs: Sequence[SearchDoc]) -> None:
        self.names = [d.name for d in docs]
        self.tfs = [Counter(tokens(doc_text(d))) for d in docs]
        self.lens = [sum(tf.values()) for tf in self.tfs]
        self.avg = (sum(self.lens) / len(self.lens)) if self.lens else 1.0
        self.df: Counter[str] = Counter()
        for tf in self.tfs:
            self.df.update(tf.keys())
        self.postings: dict[str, list[int]] = {}
        for i, tf in enumerate(self.tfs):
            for t in tf:
                self.postings.setdefault(t, []).append(i)

    def search(self, query: str, k: int, allowed: Collection[str]) -> list[str]:
        n = len(self.names)
        scores: dict[int, float] = {}
        for term in set(tokens(query)):
            docs = self.postings.get(term)
            if not docs:
                continue
            idf = math.log(1 + (n - len(docs) + 0.5) / (len(docs) + 0.5))
            for i in docs:
                if self.names[i] not in allowed:
                    continue
                f = self.tfs[i][term]
                norm = self.K1 * (1 - self.B + self.B * self.lens[i] / (self.avg or 1.0))
                scores[i] = scores.get(i, 0.0) + idf * f * (self.K1 + 1) / (f + norm)
        best = sorted(scores.items(), key=lambda x: (-x[1], self.names[x[0]]))
        return [self.names[i] for i, _ in best[:k]]


class LexicalEngine:
    mode: Mode = "lexical"

    def __init__(self, reason: str = "") -> None:
        self.reason = reason

    def index(self, docs: Sequence[SearchDoc]) -> Index:
        return _Bm25Index(docs)


def load_engine(kind: str = "auto") -> Engine:
    """The hybrid engine when asked for (`auto`/`hybrid`) and available, else lexical."""
    if kind == "lexical":
        return LexicalEngine("lexical search chosen in settings")
    try:
        module = importlib.import_module("warden_registry.search")
    except ImportError as e:
        return LexicalEngine(f"hybrid engine not installed ({e.name})")
    factory = getattr(module, "create_engine", None) or getattr(module, "Engine", None)
    if factory is None:
        return LexicalEngine("warden_registry.search has no create_engine()")
    try:
        engine: Engine = factory()
    except (ImportError, OSError, RuntimeError, ValueError) as e:
        log.warning("hybrid search engine did not start (%s); using lexical search", type(e).__name__)
        return LexicalEngine(f"hybrid engine did not start: {type(e).__name__}")
    return engine
