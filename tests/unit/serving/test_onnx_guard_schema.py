"""The guard's table of tensor-holding fields is onnx.proto's, and no external tensor gets by.

The table is derived here from the pinned `onnx` package's protobuf descriptors (and checked
against the onnx.proto it ships): a new onnx with a new field that can hold a tensor fails this
test until the guard walks it. The fuzz test builds models with the real onnx classes, nesting
every derived field at random, and holds the guard's verdict to the truth.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from onnx import onnx_ml_pb2

from ferry_core.errors import ModelUnavailable
from ferry_core.serving.onnx_guard import (
    DATA_LOCATION,
    EXTERNAL_DATA,
    TENSOR_HOLDERS,
    Holder,
    ensure_self_contained,
)


def _reachable(root: Any) -> dict[str, Any]:
    """Every message type reachable from `root` through message-typed fields, by full name."""
    found: dict[str, Any] = {}
    todo = [root]
    while todo:
        d = todo.pop()
        if d.full_name not in found:
            found[d.full_name] = d
            todo.extend(f.message_type for f in d.fields if f.message_type is not None)
    return found


def derived_holders(module: Any) -> dict[str, dict[str, Holder]]:
    """The message-typed fields, reachable from ModelProto, that can hold a TensorProto."""
    messages = _reachable(module.ModelProto.DESCRIPTOR)
    holds = {"onnx.TensorProto"}
    grew = True
    while grew:
        grew = False
        for name, d in messages.items():
            if name not in holds and any(
                f.message_type is not None and f.message_type.full_name in holds for f in d.fields
            ):
                holds.add(name)
                grew = True
    table: dict[str, dict[str, Holder]] = {}
    for name in sorted(holds - {"onnx.TensorProto"}):
        table[messages[name].name] = {
            f.name: Holder(f.number, f.message_type.name, f.is_repeated)
            for f in messages[name].fields
            if f.message_type is not None and f.message_type.full_name in holds
        }
    return table


def test_the_guard_walks_every_field_that_can_hold_a_tensor() -> None:
    """
    Given the descriptors the pinned onnx package parses models with (onnx-ml.proto, a
        superset of onnx.proto)
    When the fields that can transitively hold a TensorProto are derived from them
    Then they are exactly the guard's table: names, numbers, types and repeatedness
    """
    assert derived_holders(onnx_ml_pb2) == TENSOR_HOLDERS


def test_the_tensor_fields_the_guard_reads_are_onnx_s() -> None:
    fields = onnx.TensorProto.DESCRIPTOR.fields_by_name
    assert fields["external_data"].number == EXTERNAL_DATA.number
    assert fields["external_data"].is_repeated
    assert fields["external_data"].message_type.name == EXTERNAL_DATA.message
    assert fields["data_location"].number == DATA_LOCATION
    assert onnx.TensorProto.DEFAULT == 0


def test_the_table_matches_the_onnx_proto_files_shipped_with_onnx() -> None:
    """The same fields, read from the .proto text itself (the descriptors' source)."""
    folder = Path(onnx.__file__).parent
    for proto in ("onnx.proto", "onnx-ml.proto"):
        text = (folder / proto).read_text()
        assert 'syntax = "proto2"' in text
        for message, holders in TENSOR_HOLDERS.items():
            body = re.search(rf"\nmessage {message} \{{(.*?)\n\}}", text, re.S)
            assert body, f"{proto}: no message {message}"
            for name, h in holders.items():
                label = "repeated" if h.repeated else "optional"
                pattern = rf"\b{label} {h.message} {name} = {h.number};"
                assert re.search(pattern, body.group(1)), f"{proto}: {message}.{name}"


# -- the fuzz test ------------------------------------------------------------------------------

HOLDERS = derived_holders(onnx_ml_pb2)
TENSOR_KINDS = ("plain", "plain", "plain", "location", "entries", "both", "default declared")


def _tensor(draw: Any, t: onnx.TensorProto) -> bool:
    """Fill a tensor; True when it is external (how onnxruntime would decide, or stricter)."""
    kind = draw(st.sampled_from(TENSOR_KINDS))
    t.name = draw(st.text(max_size=6))
    t.dims.append(4)
    t.data_type = onnx.TensorProto.FLOAT
    if kind in ("plain", "default declared"):
        t.raw_data = np.ones(4, dtype=np.float32).tobytes()
    if kind == "default declared":
        t.data_location = onnx.TensorProto.DEFAULT
    if kind in ("location", "both"):
        t.data_location = onnx.TensorProto.EXTERNAL
    if kind in ("entries", "both"):
        entry = t.external_data.add()
        entry.key, entry.value = "location", draw(st.sampled_from(["/etc/passwd", "../w.bin"]))
    return kind in ("location", "entries", "both")


def _fill(draw: Any, msg: Any, depth: int, where: str, bad: set[str]) -> None:
    """Give `msg` random children in random tensor-holding fields, `depth` levels at most."""
    kind = msg.DESCRIPTOR.name
    if kind == "TensorProto":
        if _tensor(draw, msg):
            bad.add(where)
        return
    if kind == "NodeProto":
        msg.op_type = draw(st.sampled_from(["Add", "If", "Loop", "Scan", "Constant"]))
    if kind == "AttributeProto":  # an unpacked list, as tree ensembles store theirs
        msg.name = "nodes_values"
        msg.floats.extend(draw(st.lists(st.floats(width=32), max_size=5)))
    if depth == 0:
        return
    holders = HOLDERS[kind]
    for name in draw(st.lists(st.sampled_from(sorted(holders)), max_size=3, unique=True)):
        path = f"{where}.{name}" if where else name
        if holders[name].repeated:
            for i in range(draw(st.integers(1, 2))):
                _fill(draw, getattr(msg, name).add(), depth - 1, f"{path}[{i}]", bad)
        else:
            child = getattr(msg, name)
            child.SetInParent()
            _fill(draw, child, depth - 1, path, bad)


@st.composite
def models(draw: Any) -> tuple[bytes, set[str]]:
    """(model bytes, the places of its external tensors) with tensors nested up to 9 deep."""
    model = onnx.ModelProto(ir_version=10, producer_name="fuzz")
    bad: set[str] = set()
    _fill(draw, model, draw(st.integers(1, 9)), "", bad)
    return model.SerializeToString(), bad


@settings(
    max_examples=500,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=models())
def test_no_external_tensor_passes_in_any_nesting(case: tuple[bytes, set[str]]) -> None:
    """
    Given a model built by the onnx package with tensors at random depths in random fields
        of every kind that can hold one (500 seeded cases)
    When the guard checks it
    Then it is refused exactly when a tensor is external, naming one of those tensors
    """
    data, bad = case
    event("external" if bad else "self-contained")
    if not bad:
        ensure_self_contained(data)
        return
    try:
        ensure_self_contained(data)
    except ModelUnavailable as exc:
        where = re.search(r"external data files \((.*?)\)", exc.message)
        assert where and where.group(1) in bad
    else:
        raise AssertionError(f"external tensors at {sorted(bad)} passed the guard")
