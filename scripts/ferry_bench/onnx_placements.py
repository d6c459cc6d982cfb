"""Every place in an ONNX model where a tensor can sit, as small models `y = x + w`.

`placement_model(placement, tensor)` builds a model whose tensor `w` (made by `tensor`, so the
caller decides whether it is plain or points at external data) sits in one placement: graph
initializers and sparse initializers (values or indices), node attributes (`t`, `sparse_tensor`,
`tensors`, `sparse_tensors`, a subgraph in `graphs`), If/Loop/Scan bodies and subgraphs nested
in subgraphs, model-local functions (a body node, a subgraph in the body, an attribute default)
and training information (initialization and algorithm graphs). The malicious-file corpus and
the ONNX guard's tests share them. Custom-domain nodes (`ferry.evil`) carry the attribute kinds
no standard operator has; onnxruntime would refuse those graphs, the guard must refuse first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# (name, numpy dtype) -> TensorProto of shape [4].
TensorMaker = Callable[[str, str], Any]

PLACEMENTS = (
    "initializer",
    "sparse initializer",
    "sparse indices",
    "Constant attribute",
    "sparse Constant attribute",
    "tensors attribute",
    "sparse_tensors attribute",
    "graphs attribute",
    "If branch",
    "Loop body",
    "Scan body",
    "If in Loop in If",
    "function",
    "function subgraph",
    "function attribute default",
    "training initialization",
    "training algorithm",
)


def plain_tensor(name: str, dtype: str = "float32") -> Any:
    """A self-contained [4] tensor."""
    import numpy as np
    from onnx import numpy_helper

    return numpy_helper.from_array(np.arange(4, dtype=dtype), name)


def _io(name: str, elem: str = "FLOAT", shape: list[int] | None = None) -> Any:
    from onnx import TensorProto, helper

    return helper.make_tensor_value_info(name, getattr(TensorProto, elem), shape)


def _branch(w: Any, inputs: tuple[Any, ...] = ()) -> Any:
    """A subgraph that outputs its initializer `w` (the shape of an If branch)."""
    from onnx import helper

    nodes = [helper.make_node("Identity", ["w"], ["w_out"])]
    outputs = [_io("w_out", shape=[4])]
    return helper.make_graph(nodes, "branch", list(inputs), outputs, initializer=[w])


def _if(cond: str, then: Any, out: str = "w") -> Any:
    from onnx import helper

    return helper.make_node(
        "If", [cond], [out], then_branch=then, else_branch=_branch(plain_tensor("w"))
    )


def _sparse(tensor: TensorMaker, part: str) -> Any:
    """A sparse [4] tensor whose `part` ("values" or "indices") comes from `tensor`."""
    from onnx import helper

    values = tensor("w", "float32") if part == "values" else plain_tensor("w")
    indices = tensor("w_idx", "int64") if part == "indices" else plain_tensor("w_idx", "int64")
    return helper.make_sparse_tensor(values, indices, [4])


def _loop(body: Any) -> list[Any]:
    """`w = Loop(1 iteration, body)`."""
    from onnx import TensorProto, helper

    count = helper.make_tensor("n", TensorProto.INT64, [], [1])
    return [
        helper.make_node("Constant", [], ["n"], value=count),
        helper.make_node("Loop", ["n", ""], ["w"], body=body),
    ]


def _loop_body(w_node: Any, initializer: list[Any]) -> Any:
    """A Loop body (iteration, condition in; condition, scan output out) computing w_out."""
    from onnx import helper

    nodes = [helper.make_node("Identity", ["cond_in"], ["cond_out"]), w_node]
    inputs = [_io("i", "INT64", []), _io("cond_in", "BOOL", [])]
    outputs = [_io("cond_out", "BOOL", []), _io("w_out", shape=[4])]
    return helper.make_graph(nodes, "body", inputs, outputs, initializer=initializer)


def _custom(**attrs: Any) -> list[Any]:
    from onnx import helper

    return [helper.make_node("Pick", [], ["w"], domain="ferry.evil", **attrs)]


def _graph_nodes(placement: str, tensor: TensorMaker) -> tuple[list[Any], dict[str, Any]]:
    """The nodes computing `w` with it in `placement`, and extra `make_graph` arguments."""
    from onnx import helper

    if placement == "initializer":
        return [], {"initializer": [tensor("w", "float32")]}
    if placement in ("sparse initializer", "sparse indices"):
        part = "values" if placement == "sparse initializer" else "indices"
        return [], {"sparse_initializer": [_sparse(tensor, part)]}
    w = tensor("w", "float32")
    builders: dict[str, Callable[[], list[Any]]] = {
        "Constant attribute": lambda: [helper.make_node("Constant", [], ["w"], value=w)],
        "sparse Constant attribute": lambda: [
            helper.make_node("Constant", [], ["w"], sparse_value=_sparse(tensor, "values"))
        ],
        "tensors attribute": lambda: _custom(weights=[plain_tensor("a"), w]),
        "sparse_tensors attribute": lambda: _custom(
            sparse=[_sparse(plain_tensor, "values"), _sparse(tensor, "indices")]
        ),
        "graphs attribute": lambda: _custom(branches=[_branch(plain_tensor("w")), _branch(w)]),
        "If branch": lambda: [_if("c", _branch(w))],
        "Loop body": lambda: _loop(
            _loop_body(helper.make_node("Identity", ["w"], ["w_out"]), [w])
        ),
        "Scan body": lambda: [
            helper.make_node("Scan", ["x"], ["s"], body=_branch(w, (_io("xi", shape=[]),)),
                             num_scan_inputs=1),
            helper.make_node("Identity", ["s"], ["w"]),
        ],
        "If in Loop in If": lambda: [
            _if("c", helper.make_graph(
                _loop(_loop_body(_if("cond_in", _branch(w), "w_out"), [])),
                "outer", [], [_io("w", shape=[4])],
            ))
        ],
    }  # fmt: skip
    return builders[placement](), {}


def _function_model(placement: str, tensor: TensorMaker, opset: list[Any]) -> Any:
    """`y = AddW(x)`: a model-local function holding `w` in a body node, a body subgraph or
    the default of its `value` attribute."""
    from onnx import AttributeProto, TensorProto, helper

    w = tensor("w", "float32")
    add = helper.make_node("Add", ["a", "w"], ["b"])
    defaults: list[Any] = []
    if placement == "function":
        body = [helper.make_node("Constant", [], ["w"], value=w), add]
    elif placement == "function subgraph":
        true = helper.make_tensor("c", TensorProto.BOOL, [], [True])
        cond = helper.make_node("Constant", [], ["c"], value=true)
        body = [cond, _if("c", _branch(w)), add]
    else:
        ref = helper.make_node("Constant", [], ["w"])
        ref.attribute.add(name="value", ref_attr_name="value", type=AttributeProto.TENSOR)
        body = [ref, add]
        defaults = [helper.make_attribute("value", w)]
    fn = helper.make_function(
        "ferry.evil", "AddW", ["a"], ["b"], body, opset, attribute_protos=defaults
    )
    node = helper.make_node("AddW", ["x"], ["y"], domain="ferry.evil")
    graph = helper.make_graph([node], "g", [_io("x", shape=[4])], [_io("y", shape=[4])])
    return helper.make_model(graph, opset_imports=opset, functions=[fn])


def placement_model(placement: str, tensor: TensorMaker) -> Any:
    """A small valid-looking ModelProto `y = x + w` whose `w` sits in `placement`."""
    from onnx import helper

    if placement not in PLACEMENTS:
        raise ValueError(placement)
    opset = [helper.make_opsetid("", 17), helper.make_opsetid("ferry.evil", 1)]
    if placement.startswith("function"):
        return _function_model(placement, tensor, opset)
    x, y, cond = _io("x", shape=[4]), _io("y", shape=[4]), _io("c", "BOOL", [])
    if placement.startswith("training"):
        plain = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
        model = helper.make_model(plain, opset_imports=opset)
        info = model.training_info.add()
        part = info.initialization if placement == "training initialization" else info.algorithm
        part.CopyFrom(_branch(tensor("w", "float32")))
        return model
    nodes, extra = _graph_nodes(placement, tensor)
    nodes.append(helper.make_node("Add", ["x", "w"], ["y"]))
    inputs = [x, cond] if placement.startswith("If") else [x]
    graph = helper.make_graph(nodes, "g", inputs, [y], **extra)
    return helper.make_model(graph, opset_imports=opset)
