"""Only self-contained ONNX is ever loaded: external data is refused before onnxruntime runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from ferry_bench.malicious_onnx import model_file
from ferry_bench.onnx_placements import PLACEMENTS, placement_model, plain_tensor
from ferry_core.card import Artifact, Card, Feature, InputSchema
from ferry_core.errors import ModelUnavailable
from ferry_core.serving.inference import OnnxModel
from ferry_core.serving.onnx_guard import ensure_self_contained


def _add_model(initializer: TensorProto) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])
    node = helper.make_node("Add", ["x", initializer.name], ["y"])
    graph = helper.make_graph([node], "g", [x], [y], initializer=[initializer])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _external(name: str, location: str) -> TensorProto:
    t = numpy_helper.from_array(np.ones((1,), dtype=np.float32), name)
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    for k, v in {"location": location, "offset": "0", "length": "4"}.items():
        entry = t.external_data.add()
        entry.key, entry.value = k, v
    return t


def test_self_contained_model_passes(built) -> None:
    ensure_self_contained(built.onnx_bytes)


def test_plain_initializer_passes() -> None:
    model = _add_model(numpy_helper.from_array(np.ones((1,), dtype=np.float32), "w"))
    ensure_self_contained(model.SerializeToString())


@pytest.mark.parametrize("location", ["../../../../etc/passwd", "/etc/passwd", "weights.bin"])
def test_external_initializer_is_refused(location: str) -> None:
    model = _add_model(_external("w", location))
    with pytest.raises(ModelUnavailable, match="external data"):
        ensure_self_contained(model.SerializeToString())


def test_external_data_hidden_in_a_subgraph_is_refused() -> None:
    inner_out = helper.make_tensor_value_info("z", TensorProto.FLOAT, [1])
    inner = helper.make_graph(
        [helper.make_node("Identity", ["w"], ["z"])],
        "branch",
        [],
        [inner_out],
        initializer=[_external("w", "/etc/shadow")],
    )
    cond = helper.make_tensor_value_info("c", TensorProto.BOOL, [])
    out = helper.make_tensor_value_info("z", TensorProto.FLOAT, [1])
    node = helper.make_node("If", ["c"], ["z"], then_branch=inner, else_branch=inner)
    graph = helper.make_graph([node], "g", [cond], [out])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(ModelUnavailable, match="external data"):
        ensure_self_contained(model.SerializeToString())


def test_external_data_in_a_constant_attribute_is_refused() -> None:
    out = helper.make_tensor_value_info("z", TensorProto.FLOAT, [1])
    node = helper.make_node("Constant", [], ["z"], value=_external("c", "/proc/self/environ"))
    graph = helper.make_graph([node], "g", [], [out])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(ModelUnavailable, match="external data"):
        ensure_self_contained(model.SerializeToString())


@pytest.mark.parametrize(
    "data", [b"", b"\xff" * 64, b"\x0a\xff\xff\xff\xff\x0f", b"not onnx at all"]
)
def test_garbage_is_refused_cleanly(data: bytes) -> None:
    with pytest.raises(ModelUnavailable):
        ensure_self_contained(data)


def test_the_serving_loader_refuses_a_model_pointing_outside_its_folder(tmp_path: Path) -> None:
    """The crafted file is refused before onnxruntime could open the path it names."""
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.ones((1,), dtype=np.float32).tobytes())
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    data = _add_model(_external("w", f"../{secret.name}")).SerializeToString()
    card = Card(
        name="evil",
        version=1,
        input_schema=InputSchema(features=[Feature(name="x", type="number")]),
        artifact=Artifact(uri="s3://b/k", sha256="0" * 64, size=len(data)),
    )
    with pytest.raises(ModelUnavailable, match="external data"):
        OnnxModel(card, data)


# -- every placement a tensor can take (shared with the malicious-file corpus) -----------------

WHERE = {
    "initializer": "graph.initializer[0]",
    "sparse initializer": "graph.sparse_initializer[0].values",
    "sparse indices": "graph.sparse_initializer[0].indices",
    "Constant attribute": "graph.node[0].attribute[0].t",
    "sparse Constant attribute": "graph.node[0].attribute[0].sparse_tensor.values",
    "tensors attribute": "graph.node[0].attribute[0].tensors[1]",
    "sparse_tensors attribute": "graph.node[0].attribute[0].sparse_tensors[1].indices",
    "graphs attribute": "graph.node[0].attribute[0].graphs[1].initializer[0]",
    "If branch": "graph.node[0].attribute[1].g.initializer[0]",
    "Loop body": "graph.node[1].attribute[0].g.initializer[0]",
    "Scan body": "graph.node[0].attribute[0].g.initializer[0]",
    "If in Loop in If": "graph.node[0].attribute[1].g.node[1].attribute[0].g.node[1]"
    ".attribute[1].g.initializer[0]",
    "function": "functions[0].node[0].attribute[0].t",
    "function subgraph": "functions[0].node[1].attribute[1].g.initializer[0]",
    "function attribute default": "functions[0].attribute_proto[0].t",
    "training initialization": "training_info[0].initialization.initializer[0]",
    "training algorithm": "training_info[0].algorithm.initializer[0]",
}


def test_every_placement_has_its_expected_place() -> None:
    assert set(WHERE) == set(PLACEMENTS)


@pytest.mark.parametrize("location", ["/etc/passwd", None])
@pytest.mark.parametrize("placement", PLACEMENTS)
def test_an_external_tensor_in_any_placement_is_refused_where_it_is(
    placement: str, location: str | None
) -> None:
    """
    Given a model whose only external tensor sits in `placement` (with or without a location)
    When the guard checks it
    Then it is refused, naming the place, and the same model with a plain tensor passes
    """
    with pytest.raises(ModelUnavailable, match="external data") as refused:
        ensure_self_contained(model_file(placement, location))
    assert f"({WHERE[placement]})" in str(refused.value)
    ensure_self_contained(placement_model(placement, plain_tensor).SerializeToString())


# -- the wire format as protobuf (and so onnxruntime) reads it ----------------------------------


def _key(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _message(number: int, body: bytes) -> bytes:
    return _key(number, 2) + _varint(len(body)) + body


def _model_with_initializer(tensor: bytes) -> bytes:
    """ModelProto.graph(7).initializer(5) = the raw TensorProto bytes."""
    return _message(7, _message(5, tensor))


@pytest.mark.parametrize(
    ("tensor", "why"),
    [
        (_key(14, 0) + _varint(2**32 + 1), "a 64-bit varint protobuf truncates to EXTERNAL"),
        (_key(14, 0) + _varint(2**64 - 1), "-1: not DEFAULT"),
        (_key(14, 0) + _varint(7), "an unknown location: not DEFAULT"),
        (_message(13, _message(1, b"location") + _message(2, b"/etc/passwd")), "entries only"),
        (_key(14, 0) + b"\x81\x80\x80\x00", "EXTERNAL in a padded varint"),
    ],
)
def test_external_markers_in_any_encoding_are_refused(tensor: bytes, why: str) -> None:
    with pytest.raises(ModelUnavailable, match="external data"):
        ensure_self_contained(_model_with_initializer(tensor))


def test_the_guard_reads_truncated_enums_as_onnx_does() -> None:
    """The danger is real: the onnx package itself reads 2**32 + 1 as EXTERNAL."""
    data = _model_with_initializer(_key(14, 0) + _varint(2**32 + 1))
    assert onnx.load_from_string(data).graph.initializer[0].data_location == TensorProto.EXTERNAL


def test_a_field_with_the_wrong_wire_type_is_ignored_as_protobuf_ignores_it() -> None:
    """external_data (13) sent as a varint is an unknown field to protobuf: no external data."""
    data = _model_with_initializer(_key(13, 0) + _varint(1) + _key(1, 2) + _varint(1) + b"w")
    assert not onnx.load_from_string(data).graph.initializer[0].external_data
    ensure_self_contained(data)


def test_a_repeated_singular_graph_is_merged_as_protobuf_merges_it() -> None:
    """Two `graph` fields merge into one graph holding both initializers; the bad one counts."""
    clean = _message(5, _message(8, b"w"))  # initializer named "w"
    bad = _message(5, _key(14, 0) + _varint(1))
    data = _message(7, clean) + _message(7, bad)
    assert len(onnx.load_from_string(data).graph.initializer) == 2
    with pytest.raises(ModelUnavailable, match=r"graph\.initializer\[1\]"):
        ensure_self_contained(data)


def test_a_graph_sent_as_a_group_is_no_graph_to_onnxruntime_either() -> None:
    """A message field in group encoding (wire types 3/4) is an unknown field to protobuf: the
    guard lets it by because onnxruntime finds no graph in it, let alone a tensor to read."""
    import onnxruntime as ort

    graph = _message(5, _key(14, 0) + _varint(1))  # initializer: an EXTERNAL tensor
    data = _key(7, 3) + graph + _key(7, 4)
    ensure_self_contained(data)
    with pytest.raises(Exception, match="No graph was found"):
        ort.InferenceSession(data, providers=["CPUExecutionProvider"])


def test_nesting_beyond_protobufs_limit_is_refused() -> None:
    graph = b""
    for _ in range(60):  # graph -> node -> attribute -> g: 180 levels of messages
        graph = _message(1, _message(5, _message(6, graph)))
    with pytest.raises(ModelUnavailable, match="nested deeper"):
        ensure_self_contained(_message(7, graph))


def test_a_big_tree_ensemble_is_checked_in_milliseconds() -> None:
    """Unpacked attribute lists (how a tree ensemble stores its nodes) stay unknown bytes:
    10 MB of them are not walked one value at a time."""
    import time

    values = np.arange(2_500_000, dtype=np.float32).tolist()
    node = helper.make_node("TreeEnsembleRegressor", ["x"], ["y"], domain="ai.onnx.ml")
    node.attribute.append(helper.make_attribute("nodes_values", values))
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1])
    data = helper.make_model(helper.make_graph([node], "g", [x], [out])).SerializeToString()
    assert len(data) > 10_000_000
    started = time.perf_counter()
    ensure_self_contained(data)
    assert time.perf_counter() - started < 1.0
