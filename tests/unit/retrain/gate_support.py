"""Fixtures and helpers of the gate tests: candidates built to pass or to fail each check."""

from __future__ import annotations

import io
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ferry_core.card import Artifact, Card, InputSchema, Output
from ferry_core.retrain.candidate import CandidateSpec, reference_parquet
from ferry_core.retrain.gate.policy import GatePolicy
from ferry_core.retrain.gate.report import GateReport
from ferry_core.retrain.gate.validate import run_gate
from ferry_core.store import sha256_hex

# These tests assert what the gate decides, not how fast it runs: their latency budget is one
# no working check can miss (a test sets a tiny one to see the check fail). The default 50 ms
# budget is a speed target, met in `ferry bench scoring`.
NO_SPEED_BUDGET_MS = 60_000.0
FAST = GatePolicy(latency_runs=30, latency_p99_ms=NO_SPEED_BUDGET_MS)


def spec_of(built: Any, schema: InputSchema | None = None, **update: Any) -> CandidateSpec:
    """The spec `write_bundle` would write for `built` (optionally with another schema)."""
    ref = reference_parquet(built.reference)
    fields = {
        "name": "credit-risk",
        "run_id": "run-1",
        "input_schema": schema or built.schema,
        "output": Output(threshold=built.threshold),
        "metrics": dict(built.metrics),
        "baseline": built.baseline,
        "model_sha256": sha256_hex(built.onnx_bytes),
        "model_size": len(built.onnx_bytes),
        "reference_sha256": sha256_hex(ref),
        **update,
    }
    return CandidateSpec(**fields)


def table_of(built: Any) -> pa.Table:
    """The reference rows as validation reads them back (through Parquet)."""
    return pq.read_table(io.BytesIO(reference_parquet(built.reference)))


def card_of(built: Any, version: int = 1, schema: InputSchema | None = None, **update: Any) -> Card:
    return Card(
        name="credit-risk",
        version=version,
        input_schema=schema or built.schema,
        output=Output(threshold=built.threshold),
        artifact=Artifact(
            uri=f"s3://models/credit-risk/v{version}/model.onnx",
            sha256=sha256_hex(built.onnx_bytes),
            size=len(built.onnx_bytes),
        ),
        metrics=dict(built.metrics),
        **update,
    )


def with_feature(schema: InputSchema, name: str, **update: Any) -> InputSchema:
    """The schema with one feature changed (validated again, as a real card would be)."""
    feats = [
        {**f.model_dump(), **update} if f.name == name else f.model_dump() for f in schema.features
    ]
    return InputSchema.model_validate({"features": feats})


def check(report: GateReport, name: str) -> dict[str, Any]:
    (found,) = [c for c in report.checks if c["name"] == name]
    return found


def gate(
    built: Any,
    champion: Any | None,
    policy: GatePolicy = FAST,
    spec: CandidateSpec | None = None,
    table: pa.Table | None = None,
    onnx: bytes | None = None,
    champion_card: Card | None = None,
    breaking_change: bool = False,
) -> GateReport:
    card = champion_card or (card_of(champion) if champion is not None else None)
    return run_gate(
        spec or spec_of(built),
        onnx if onnx is not None else built.onnx_bytes,
        table if table is not None else table_of(built),
        card,
        champion.onnx_bytes if champion is not None else None,
        policy,
        breaking_change=breaking_change,
    )


def constant_onnx(schema: InputSchema, value: float) -> bytes:
    """A graph with the schema's inputs that answers `value` for every row, whatever it gets."""
    from onnx import TensorProto, helper

    inputs = [
        helper.make_tensor_value_info(
            f.name, TensorProto.STRING if f.type == "category" else TensorProto.FLOAT, [None, 1]
        )
        for f in schema.features
    ]
    first = next(f.name for f in schema.features if f.type != "category")
    nodes = [
        helper.make_node("Shape", [first], ["n"], start=0, end=1),
        helper.make_node(
            "Constant", [], ["two"], value=helper.make_tensor("two", TensorProto.INT64, [1], [2])
        ),
        helper.make_node("Concat", ["n", "two"], ["shape"], axis=0),
        helper.make_node(
            "ConstantOfShape",
            ["shape"],
            ["probabilities"],
            value=helper.make_tensor("v", TensorProto.FLOAT, [1], [value]),
        ),
    ]
    output = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])
    graph = helper.make_graph(nodes, "constant", inputs, [output])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()
