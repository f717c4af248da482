"""The OpenAI-compatible embedder against a real HTTP server on loopback."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest
from pydantic import SecretStr
from warden_registry.search import EmbedderUnavailable, OpenAICompatibleEmbedder, load_embedder

KEY = "sk-test-" + "x" * 24


class Endpoint:
    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], dict[str, Any]]] = []
        self.status = 200


@pytest.fixture
def endpoint() -> Iterator[tuple[str, Endpoint]]:
    state = Endpoint()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.requests.append((self.path, dict(self.headers), body))
            if state.status != 200:
                self.send_response(state.status)
                self.end_headers()
                return
            # vectors [len(text), 3, 4] in reverse order, to check the sort by index
            data = [{"index": i, "embedding": [len(t), 3.0, 4.0]} for i, t in enumerate(body["input"])][::-1]
            payload = json.dumps({"data": data, "model": body["model"]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", state
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_openai_embedder_posts_model_and_inputs_with_the_key_and_normalises(endpoint: tuple[str, Endpoint]) -> None:
    url, state = endpoint
    embedder = OpenAICompatibleEmbedder(url, "text-embedding-3-small", SecretStr(KEY), dim=3, batch_size=2)
    vectors = embedder.embed(["a", "bb", "ccc"])
    assert vectors.dtype == np.float32 and vectors.shape == (3, 3)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(vectors[2], np.array([3, 3, 4]) / np.sqrt(34), rtol=1e-6)
    assert [r[2]["input"] for r in state.requests] == [["a", "bb"], ["ccc"]]
    path, headers, body = state.requests[0]
    assert path == "/v1/embeddings" and body["model"] == "text-embedding-3-small"
    assert headers["Authorization"] == f"Bearer {KEY}"
    embedder.close()


def test_openai_embedder_errors_raise_unavailable_and_never_show_the_key(endpoint: tuple[str, Endpoint]) -> None:
    url, state = endpoint
    embedder = OpenAICompatibleEmbedder(url, "m", SecretStr(KEY), dim=3)
    state.status = 503
    with pytest.raises(EmbedderUnavailable) as err:
        embedder.embed_query("hello")
    assert "503" in str(err.value)
    assert KEY not in str(err.value) and KEY not in repr(embedder)
    embedder.close()


def test_openai_embedder_probes_its_dimension(endpoint: tuple[str, Endpoint]) -> None:
    url, _ = endpoint
    embedder, status = load_embedder("openai", base_url=url, model="m", api_key=SecretStr(KEY))
    assert embedder is not None and embedder.dim == 3
    assert not status.degraded and status.model_id == f"openai-compatible:{url}#m"


def test_openai_embedder_times_out_on_a_silent_server() -> None:
    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1"
        embedder = OpenAICompatibleEmbedder(url, "m", None, dim=3, timeout=0.2)
        with pytest.raises(EmbedderUnavailable, match="unreachable"):
            embedder.embed(["x"])
        embedder.close()


def test_unreachable_endpoint_degrades_to_lexical_with_the_reason(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: connection refused
    embedder, status = load_embedder(
        "openai", base_url=f"http://127.0.0.1:{port}/v1", model="m", api_key=SecretStr(KEY), timeout=2
    )
    assert embedder is None and status.degraded
    assert "unreachable" in status.reason
    assert KEY not in status.reason and KEY not in caplog.text
