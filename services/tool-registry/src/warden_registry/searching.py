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
when it cannot start (no model), search is lexical and `mode` says so. `index` is called
with the whole catalog after each change to it (in a worker thread); an engine that keeps
its per-tool work (embeddings) keyed by the tool's text pays only for what changed.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import math
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from warden_common.metrics import REGISTRY_INDEX_TOOLS

__all__ = ["Engine", "Finder", "Index", "LexicalEngine", "SearchDoc", "load_engine"]

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


def load_engine(engine: str = "auto", **options: Any) -> Engine:
    """The hybrid engine when asked for (`auto`/`hybrid`) and available, else lexical.
    `options` go to the engine's `create_engine` (which embedder, where)."""
    if engine == "lexical":
        return LexicalEngine("lexical search chosen in settings")
    try:
        module = importlib.import_module("warden_registry.search")
    except ImportError as e:
        return LexicalEngine(f"hybrid engine not installed ({e.name})")
    factory = getattr(module, "create_engine", None)
    if factory is None:
        return LexicalEngine("warden_registry.search has no create_engine()")
    try:
        hybrid: Engine = factory(**options)
    except (ImportError, OSError, RuntimeError, ValueError) as e:
        log.warning("hybrid search engine did not start (%s); using lexical search", type(e).__name__)
        return LexicalEngine(f"hybrid engine did not start: {type(e).__name__}")
    return hybrid


Catalog = Callable[[], Awaitable[tuple[int, list[SearchDoc]]]]


class Finder:
    """Search that never waits on embeddings.

    A lexical index is built (in a thread) for the catalog a search sees. The hybrid engine's
    index is kept in line with the catalog by `run()`, a background job fed in chunks, so a
    big catalog never holds the engine for long; a search uses it only once it matches the
    current catalog, and gives up on it after `hybrid_timeout_s`. Otherwise the answer is
    lexical and says so.
    """

    def __init__(self, engine: Engine, *, hybrid_timeout_s: float = 2.0, chunk: int = 256) -> None:
        self.engine = engine
        self.hybrid_timeout_s = hybrid_timeout_s
        self.chunk = chunk
        self._lexical: tuple[int, Index] | None = None
        self._lexical_lock = asyncio.Lock()
        self._hybrid: tuple[int, Index] | None = None
        self._hybrid_names: set[str] = set()
        self._changed = asyncio.Event()
        self._changed.set()  # build once at start

    @property
    def hybrid(self) -> bool:
        return self.engine.mode == "hybrid"

    def changed(self) -> None:
        self._changed.set()

    async def run(self, catalog: Catalog) -> None:
        """Keep the hybrid index in line with the catalog (a job in the lifespan's task group)."""
        if not self.hybrid:
            return
        while True:
            await self._changed.wait()
            self._changed.clear()
            key, docs = await catalog()
            if self._hybrid is not None and self._hybrid[0] == key:
                continue
            # known tools first: each call adds at most `chunk` new ones (and drops gone ones)
            ordered = [d for d in docs if d.name in self._hybrid_names]
            ordered += [d for d in docs if d.name not in self._hybrid_names]
            end = len(ordered) - sum(1 for d in docs if d.name not in self._hybrid_names)
            while True:
                end = min(end + self.chunk, len(ordered))
                index = await asyncio.to_thread(self.engine.index, ordered[:end])
                self._hybrid_names = {d.name for d in ordered[:end]}
                REGISTRY_INDEX_TOOLS.labels("hybrid").set(len(self._hybrid_names))
                if end >= len(ordered):
                    break
            self._hybrid = (key, index)

    async def search(
        self, key: int, docs: Callable[[], list[SearchDoc]], query: str, k: int, allowed: Collection[str]
    ) -> tuple[list[str], Mode]:
        hybrid = self._hybrid
        if hybrid is not None and hybrid[0] == key:
            try:
                found = await asyncio.wait_for(
                    asyncio.to_thread(hybrid[1].search, query, k, allowed), timeout=self.hybrid_timeout_s
                )
                return found, "hybrid"
            except TimeoutError:
                log.warning("hybrid search took over %.1fs; answering lexically", self.hybrid_timeout_s)
        async with self._lexical_lock:
            if self._lexical is None or self._lexical[0] != key:
                built = docs()
                self._lexical = (key, await asyncio.to_thread(_Bm25Index, built))
                REGISTRY_INDEX_TOOLS.labels("lexical").set(len(built))
            lexical = self._lexical[1]
        return lexical.search(query, k, allowed), "lexical"
