"""Only self-contained ONNX is ever loaded: external data is refused before onnxruntime runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

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
