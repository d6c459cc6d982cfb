"""Inference: one onnxruntime session per (model, version), loaded once per container.

The ONNX graph carries the whole preprocessing (imputation, one-hot encoding), so raw
feature values go in by name, one graph input per feature, and the score comes out. Feeds
are keyed by feature name everywhere; `score` hands each to its graph input (the card's
`onnx_input` when a converter renamed it).
Encoding conventions (shared with the model builder and the registration checks):
numbers, integers and booleans are float32 columns with null → NaN (the graph's imputer
fills them); categories are string columns with null → "" (an unknown category to the
encoder, which ignores it).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import onnxruntime as ort

from ferry_core.card import Card
from ferry_core.errors import ModelUnavailable
from ferry_core.serving.onnx_guard import ensure_self_contained

_ONNX_TYPE = {"number": "tensor(float)", "integer": "tensor(float)", "boolean": "tensor(float)"}
MISSING_CATEGORY = ""


def session_options(threads: int = 1) -> ort.SessionOptions:
    """Options for Lambda: a fixed, small thread pool (no spinning), sequential execution.

    Lambda gives 1-6 vCPUs; one request is one row or a few hundred, where thread hand-off
    costs more than it saves. Batch scoring passes more threads for large chunks.
    """
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return opts


class OnnxModel:
    """A loaded model version: encodes validated rows, runs the graph, returns scores."""

    def __init__(self, card: Card, onnx_bytes: bytes, threads: int = 1) -> None:
        ensure_self_contained(onnx_bytes)
        try:
            self._session = ort.InferenceSession(
                onnx_bytes,
                sess_options=session_options(threads),
                providers=["CPUExecutionProvider"],
            )
        except Exception as exc:  # onnxruntime raises its own exception types for bad graphs
            raise ModelUnavailable(
                f"onnxruntime cannot load {card.name} v{card.version}: {exc}"
            ) from exc
        self.card = card
        self.name = card.name
        self.version = card.version
        self._features = list(card.input_schema.features)
        self._numeric = [f.name for f in self._features if f.type != "category"]
        self._categorical = [f.name for f in self._features if f.type == "category"]
        self._graph_input = {f.name: f.graph_input for f in self._features}
        self._check_signature()
        self._output = card.output.probability_output
        self._index = card.output.positive_index
        self._threshold = card.output.threshold

    def _check_signature(self) -> None:
        inputs = {i.name: i.type for i in self._session.get_inputs()}
        schema = {f.graph_input for f in self._features}
        if set(inputs) != schema:
            raise ModelUnavailable(
                f"graph inputs {sorted(inputs)} do not match the card's features {sorted(schema)}"
            )
        for f in self._features:
            want = _ONNX_TYPE.get(f.type, "tensor(string)")
            got = inputs[f.graph_input]
            if got != want:
                raise ModelUnavailable(f"graph input {f.graph_input!r} is {got}, expected {want}")
        outputs = {o.name for o in self._session.get_outputs()}
        if self.card.output.probability_output not in outputs:
            want = self.card.output.probability_output
            raise ModelUnavailable(f"graph has no output {want!r} (has {sorted(outputs)})")

    def encode_rows(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
        """Turn validated rows into one (n, 1) column per graph input."""
        n = len(rows)
        feeds: dict[str, np.ndarray] = {}
        if self._numeric:
            # One (features, n) float32 block: None becomes NaN in the conversion itself.
            names = self._numeric
            block = np.array([[r.get(k) for k in names] for r in rows], dtype=np.float32)
            block = np.ascontiguousarray(block.T).reshape(len(names), n, 1)
            for i, name in enumerate(names):
                feeds[name] = block[i]
        for name in self._categorical:
            col = [r.get(name) for r in rows]
            feeds[name] = np.array(
                [MISSING_CATEGORY if v is None else v for v in col], dtype=object
            ).reshape(n, 1)
        return feeds

    def score(self, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
        """Positive-class probability per row (feeds keyed by feature name), as float64."""
        graph_feeds = {self._graph_input.get(k, k): v for k, v in feeds.items()}
        try:
            (probs,) = self._session.run([self._output], graph_feeds)
        except Exception as exc:
            raise ModelUnavailable(
                f"inference failed for {self.name} v{self.version}: {exc}"
            ) from exc
        scores = np.asarray(probs, dtype=np.float64)[:, self._index]
        if not np.isfinite(scores.sum()):  # one reduction: NaN or ±inf anywhere poisons the sum
            raise ModelUnavailable(f"{self.name} v{self.version} produced a non-finite score")
        return scores

    def labels(self, scores: np.ndarray) -> np.ndarray:
        """1 where the score reaches the card's threshold, else 0."""
        return (scores >= self._threshold).astype(np.int64)

    def predict_rows(self, rows: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        scores = self.score(self.encode_rows(rows))
        return scores, self.labels(scores)


class ModelPool:
    """Loaded models by (name, version), least recently used evicted past `capacity`.

    Loading is serialised per pool: two threads asking for the same cold version load it once.
    """

    def __init__(self, loader: Callable[[Card], OnnxModel], capacity: int = 8) -> None:
        self._loader = loader
        self._capacity = capacity
        self._models: OrderedDict[tuple[str, int], OnnxModel] = OrderedDict()
        self._lock = threading.Lock()

    def loaded(self, card: Card) -> bool:
        """Whether `card`'s model is already in memory (its next request pays no load)."""
        return (card.name, card.version) in self._models

    def get(self, card: Card) -> OnnxModel:
        key = (card.name, card.version)
        model = self._models.get(key)
        if model is not None:
            self._models.move_to_end(key)
            return model
        with self._lock:
            model = self._models.get(key)
            if model is None:
                model = self._loader(card)
                self._models[key] = model
                while len(self._models) > self._capacity:
                    self._models.popitem(last=False)
            return model
