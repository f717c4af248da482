"""Tool search: quality (lexical vs dense vs hybrid) and scale (10,000 tools), in one run.

    python -m bench.search [--tools 10000] [--threads 1] [--profile 500]

Quality: the 527 real tools of /work/shared/data/livemcp_tools.json (LiveMCPBench, 70
servers) and the hand-written queries of bench/search/queries.jsonl (split dev/test; the
fusion weight is chosen on dev only). Recall@1, Recall@5 and MRR@10 for BM25 alone, the
embedder alone, hybrid (z-score fusion) and, for comparison, RRF.

Scale: the real tools plus variations up to --tools (each a real tool under another
connector alias, its description and parameters reworded), loaded from stored vectors as
the registry does at start-up (a variation's vector is its source tool's plus noise; the
embedding cost of new tools is measured on the real corpus and reported per tool). Then
search latency, p50/p99 over distinct queries with the query-embedding cache off, so each
search embeds its query: wall time and CPU time of the calling thread, split into query
embedding and the rest. Memory is the RSS delta of building the index.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
try:
    import warden_registry.search  # noqa: F401
except ImportError:  # the registry not installed: run from the work tree
    sys.path.insert(0, str(ROOT / "services" / "tool-registry" / "src"))

from warden_registry.search import HybridIndex, LocalEmbedder, lexical_tokens  # noqa: E402
from warden_registry.search.embedders import EmbedderStatus  # noqa: E402

DATA = Path(os.environ.get("WARDEN_BENCH_TOOLS", ROOT.parent / "shared" / "data" / "livemcp_tools.json"))
if not DATA.exists():
    DATA = Path("/work/shared/data/livemcp_tools.json")
QUERIES = Path(__file__).with_name("queries.jsonl")
Tool = tuple[str, str, str, dict[str, Any]]


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def load_tools() -> list[Tool]:
    servers = json.loads(DATA.read_text())
    return [
        (f"{key}/{t['name']}", t["name"], t.get("description") or "", t.get("inputSchema") or {})
        for server in servers
        for key, listing in server["tools"].items()
        for t in listing["tools"]
    ]


def load_queries() -> list[dict[str, Any]]:
    return [json.loads(line) for line in QUERIES.read_text().splitlines() if line.strip()]


# -- quality ---------------------------------------------------------------------------------


def metrics(ranked: Sequence[Sequence[str]], relevant: Sequence[Sequence[str]]) -> tuple[float, float, float]:
    r1 = r5 = mrr = 0.0
    for got, rel in zip(ranked, relevant, strict=True):
        want = set(rel)
        r1 += bool(got[:1]) and got[0] in want
        r5 += bool(want & set(got[:5]))
        mrr += next((1 / (i + 1) for i, t in enumerate(got[:10]) if t in want), 0.0)
    n = len(relevant)
    return r1 / n, r5 / n, mrr / n


def zscore(x: np.ndarray) -> np.ndarray:
    std = x.std(axis=1, keepdims=True)
    return np.where(std > 1e-9, (x - x.mean(axis=1, keepdims=True)) / np.maximum(std, 1e-9), 0.0)


def rrf(a: np.ndarray, b: np.ndarray, weight: float, k: int = 60) -> np.ndarray:
    ra = np.argsort(np.argsort(-a, axis=1), axis=1)
    rb = np.argsort(np.argsort(-b, axis=1), axis=1)
    return weight / (k + ra + 1) + (1 - weight) / (k + rb + 1)


def quality(index: HybridIndex, ids: list[str], queries: list[dict[str, Any]]) -> float:
    """Print the quality table; return the dense weight chosen on dev."""
    splits = {s: [q for q in queries if q["split"] == s] for s in ("dev", "test")}
    allowed = set(ids)

    def run(split: str, method: str) -> tuple[float, float, float]:
        qs = splits[split]
        ranked = [[h.tool.id for h in index.search(q["query"], 10, allowed=allowed, method=method)] for q in qs]  # type: ignore[arg-type]
        return metrics(ranked, [q["relevant"] for q in qs])

    # score matrices over the whole corpus, for the weight sweep and RRF
    mats: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split, qs in splits.items():
        lex = np.stack([index._bm25.scores(lexical_tokens(q["query"]), len(ids)) for q in qs])
        emb = np.stack([index.embedder.embed_query(q["query"]) for q in qs])  # type: ignore[union-attr]
        mats[split] = (lex, emb @ index._vectors[: len(ids)].T)

    def eval_scores(split: str, scores: np.ndarray) -> tuple[float, float, float]:
        ranked = [[ids[i] for i in np.argsort(-row, kind="stable")[:10]] for row in scores]
        return metrics(ranked, [q["relevant"] for q in splits[split]])

    weights = [round(w, 2) for w in np.arange(0.5, 0.96, 0.05)]
    sweep = {w: eval_scores("dev", w * zscore(mats["dev"][1]) + (1 - w) * zscore(mats["dev"][0]))[2] for w in weights}
    best = max(sweep, key=lambda w: (round(sweep[w], 4), -abs(w - index.dense_weight)))
    print("dense-weight sweep on dev (MRR): " + "  ".join(f"{w:.2f}:{m:.3f}" for w, m in sweep.items()))
    print(f"chosen on dev: {best:.2f} (engine default {index.dense_weight:.2f})\n")
    index.dense_weight = best
    rrf_w = max((0.5, 0.7), key=lambda w: eval_scores("dev", rrf(mats["dev"][1], mats["dev"][0], w))[2])

    rows = []
    for name, fn in [
        ("lexical (BM25)", lambda s: run(s, "lexical")),
        ("dense (MiniLM)", lambda s: run(s, "dense")),
        (f"hybrid z-score w={best:.2f}", lambda s: run(s, "hybrid")),
        (f"RRF w={rrf_w} (for contrast)", lambda s: eval_scores(s, rrf(mats[s][1], mats[s][0], rrf_w))),
    ]:
        rows.append((name, fn("dev"), fn("test")))
    n_dev, n_test = len(splits["dev"]), len(splits["test"])
    print(f"{'method':30s} | {'dev (' + str(n_dev) + ' q)':^22s} | {'test (' + str(n_test) + ' q)':^22s}")
    print(f"{'':30s} | {'R@1':>6s} {'R@5':>6s} {'MRR':>6s} | {'R@1':>6s} {'R@5':>6s} {'MRR':>6s}")
    print("-" * 80)
    for name, dev, test in rows:
        print(f"{name:30s} | {dev[0]:6.3f} {dev[1]:6.3f} {dev[2]:6.3f} | {test[0]:6.3f} {test[1]:6.3f} {test[2]:6.3f}")
    return best


# -- scale -----------------------------------------------------------------------------------

_ALIASES = [
    "acme",
    "globex",
    "initech",
    "umbrella",
    "hooli",
    "stark",
    "wayne",
    "wonka",
    "tyrell",
    "cyberdyne",
    "aperture",
    "soylent",
    "oscorp",
    "vandelay",
    "prestige",
    "dunder",
    "pied",
    "massive",
    "nakatomi",
    "gekko",
]
_REWORD = [
    ("Get ", "Fetch "),
    ("get ", "fetch "),
    ("Search ", "Look up "),
    ("List ", "Enumerate "),
    ("Create ", "Make "),
    ("the ", "a "),
    ("information", "details"),
    ("file", "document"),
]


def variations(tools: list[Tool], total: int, seed: int = 7) -> list[Tool]:
    rng = random.Random(seed)
    out = list(tools)
    i = 0
    while len(out) < total:
        tool_id, name, desc, schema = tools[i % len(tools)]
        alias = f"{_ALIASES[(i // len(tools)) % len(_ALIASES)]}{i // (len(tools) * len(_ALIASES)) or ''}"
        for old, new in rng.sample(_REWORD, 3):
            desc = desc.replace(old, new, 1)
        desc = f"{desc} ({alias} workspace)"
        props = dict(schema.get("properties") or {}) if isinstance(schema, dict) else {}
        props[f"{alias}_account"] = {"type": "string", "description": f"the {alias} account to act for"}
        out.append((f"{alias}__{tool_id}", name, desc, {"type": "object", "properties": props}))
        i += 1
    return out


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p * (len(xs) - 1))))]


def timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[float, float]:
    c0, w0 = time.thread_time(), time.perf_counter()
    fn(*args, **kwargs)
    return (time.perf_counter() - w0) * 1000, (time.thread_time() - c0) * 1000


def scale(
    args: argparse.Namespace,
    real: list[Tool],
    real_vectors: dict[str, np.ndarray],
    weight: float,
    queries: list[str],
    embed_ms_per_tool: float,
) -> None:
    tools = variations(real, args.tools)
    rng = np.random.default_rng(3)
    source = {t[0]: t[0].split("__", 1)[-1] for t in tools}
    vectors = []
    for tool_id, *_ in tools:
        v = real_vectors[source[tool_id]] + rng.normal(0, 0.012, 384).astype(np.float32)
        vectors.append(v / np.linalg.norm(v))
    embedder = LocalEmbedder(threads=args.threads, query_cache=0)
    gc.collect()
    rss0 = rss_mb()
    t0 = time.perf_counter()
    index = HybridIndex(embedder, EmbedderStatus("local", degraded=False), dense_weight=weight)
    index.add_many(tools, vectors)
    build_s = time.perf_counter() - t0
    gc.collect()
    rss1 = rss_mb()
    ids = [t[0] for t in tools]
    profile = frozenset(random.Random(5).sample(ids, min(args.profile, len(ids))))
    everyone = frozenset(ids)  # as the registry keeps one per profile
    for q in queries[:20]:  # warm-up: code paths, BLAS threads, term postings frozen
        index.search(q, 5, allowed=everyone)

    rows = []
    for label, allowed in [(f"all {len(ids)} allowed", everyone), (f"profile of {len(profile)}", profile)]:
        embedder.query_cache.resize(0)
        cold = [timed(index.search, q, 5, allowed=allowed) for q in queries]
        embed = [timed(embedder.embed_query, q) for q in queries]
        embedder.query_cache.resize(len(queries) + 1)
        for q in queries:
            embedder.embed_query(q)
        cached = [timed(index.search, q, 5, allowed=allowed) for q in queries]
        rows.append((f"{label}: search", cold))
        rows.append(("  query embedding alone", embed))
        rows.append(("  search, query vector cached", cached))
    print(
        f"\nscale: {len(ids)} tools ({len(real)} real + {len(ids) - len(real)} variations), "
        f"{len(queries)} distinct queries, k=5, query cache off, onnxruntime threads={args.threads}"
    )
    print(
        f"index build from stored vectors: {build_s:.2f} s   RSS delta: {rss1 - rss0:.0f} MiB "
        f"(vectors {index._vectors.nbytes / 2**20:.0f} MiB)"
    )
    print(
        f"embedding new tools (real corpus, batched): {embed_ms_per_tool:.1f} ms per tool "
        f"-> {embed_ms_per_tool * len(ids) / 1000:.0f} s for {len(ids)} tools embedded from scratch"
    )
    print(f"{'search latency (ms)':32s} | {'wall p50':>9s} {'wall p99':>9s} | {'cpu p50':>8s} {'cpu p99':>8s}")
    print("-" * 75)
    for label, times in rows:
        w, c = [t[0] for t in times], [t[1] for t in times]
        print(f"{label:32s} | {pct(w, 0.5):9.2f} {pct(w, 0.99):9.2f} | {pct(c, 0.5):8.2f} {pct(c, 0.99):8.2f}")
    print(
        f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs "
        "(other work on the machine inflates wall times; CPU times are this thread's)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.search")
    parser.add_argument("--tools", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    parser.add_argument("--profile", type=int, default=500, help="size of the restricted allowed set")
    args = parser.parse_args()

    real = load_tools()
    queries = load_queries()
    t0 = time.perf_counter()
    rss0 = rss_mb()
    embedder = LocalEmbedder(threads=args.threads)
    load_s, model_mb = time.perf_counter() - t0, rss_mb() - rss0
    index = HybridIndex(embedder, EmbedderStatus("local", degraded=False))
    t0 = time.perf_counter()
    computed = index.add_many(real)
    embed_s = time.perf_counter() - t0
    print(
        f"model: {embedder.model_id}, loaded in {load_s:.1f} s (+{model_mb:.0f} MiB RSS); "
        f"{len(real)} real tools embedded in {embed_s:.1f} s\n"
    )
    weight = quality(index, [t[0] for t in real], queries)
    scale(args, real, computed, weight, [q["query"] for q in queries], embed_s * 1000 / len(real))


if __name__ == "__main__":
    main()
