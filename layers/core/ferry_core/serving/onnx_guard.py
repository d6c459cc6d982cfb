"""Refuse ONNX files that are not self-contained, without the `onnx` package.

An ONNX tensor may point at "external data": a file path (for onnxruntime also a memory
address) that the runtime opens and reads. A model store that loads such a file reads whatever
the file names. Ferry serves only self-contained models, so before a byte reaches onnxruntime
this parses the model and refuses any tensor with `external_data` entries or a `data_location`
other than DEFAULT, wherever the tensor sits: graph initializers and sparse initializers, node
attributes (`t`, `tensors`, `sparse_tensor(s)`), subgraphs (`g`, `graphs`: If, Loop and Scan
bodies, nested to any depth), model-local functions (their nodes and the defaults of their
attributes) and training information (initialization and algorithm graphs).

The parse is protobuf's own C parser (upb; onnxruntime needs protobuf, the `onnx` package is not
in the images) against a *shadow* of onnx.proto: the same messages, declaring only the fields
through which a tensor can be reached (`TENSOR_HOLDERS`). Everything else stays unknown bytes,
so a 20 MB tree ensemble is checked in milliseconds, and the guard reads the bytes with the
semantics onnxruntime's protobuf parser has (repeated fields, singular messages merged, a field
with the wrong wire type ignored). A test derives the same table from the pinned `onnx`
package's descriptors, so a new field that can hold a tensor fails the build until it is here.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from google.protobuf import descriptor_pb2, descriptor_pool, message, message_factory

from ferry_core.errors import ModelUnavailable


class Holder(NamedTuple):
    """A message-typed field of onnx.proto that can (transitively) hold a TensorProto."""

    number: int
    message: str
    repeated: bool


# Every such field of onnx.proto (onnx 1.23, proto2), by message. TrainingInfoProto's bindings
# and every other message-typed field (TypeProto, ValueInfoProto, StringStringEntryProto,
# sharding and device configuration) hold no tensor: the schema test proves it.
TENSOR_HOLDERS: dict[str, dict[str, Holder]] = {
    "ModelProto": {
        "graph": Holder(7, "GraphProto", False),
        "training_info": Holder(20, "TrainingInfoProto", True),
        "functions": Holder(25, "FunctionProto", True),
    },
    "TrainingInfoProto": {
        "initialization": Holder(1, "GraphProto", False),
        "algorithm": Holder(2, "GraphProto", False),
    },
    "FunctionProto": {
        "node": Holder(7, "NodeProto", True),
        "attribute_proto": Holder(11, "AttributeProto", True),
    },
    "GraphProto": {
        "node": Holder(1, "NodeProto", True),
        "initializer": Holder(5, "TensorProto", True),
        "sparse_initializer": Holder(15, "SparseTensorProto", True),
    },
    "NodeProto": {"attribute": Holder(5, "AttributeProto", True)},
    "AttributeProto": {
        "t": Holder(5, "TensorProto", False),
        "g": Holder(6, "GraphProto", False),
        "tensors": Holder(10, "TensorProto", True),
        "graphs": Holder(11, "GraphProto", True),
        "sparse_tensor": Holder(22, "SparseTensorProto", False),
        "sparse_tensors": Holder(23, "SparseTensorProto", True),
    },
    "SparseTensorProto": {
        "values": Holder(1, "TensorProto", False),
        "indices": Holder(2, "TensorProto", False),
    },
}
# TensorProto's own fields that point outside the file. `data_location` is an enum in onnx.proto;
# declared int32 here so any value on the wire is seen (protobuf would drop an unknown enum).
EXTERNAL_DATA = Holder(13, "StringStringEntryProto", True)
DATA_LOCATION = 14
_PACKAGE = "ferry_onnx_guard"
_REFUSAL = "the model references external data files ({where}); only self-contained ONNX is served"


def _shadow_model_class() -> Any:
    """The generated class of the shadow ModelProto, in a private descriptor pool."""
    field = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(
        name=f"{_PACKAGE}.proto", package=_PACKAGE, syntax="proto2"
    )
    messages = {**TENSOR_HOLDERS, "TensorProto": {"external_data": EXTERNAL_DATA}}
    for name, holders in messages.items():
        msg = proto.message_type.add(name=name)
        for field_name, h in holders.items():
            msg.field.add(
                name=field_name,
                number=h.number,
                type=field.TYPE_MESSAGE,
                type_name=f".{_PACKAGE}.{h.message}",
                label=field.LABEL_REPEATED if h.repeated else field.LABEL_OPTIONAL,
            )
    tensor = next(m for m in proto.message_type if m.name == "TensorProto")
    tensor.field.add(
        name="data_location",
        number=DATA_LOCATION,
        type=field.TYPE_INT32,
        label=field.LABEL_OPTIONAL,
    )
    proto.message_type.add(name=EXTERNAL_DATA.message)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.ModelProto"))


_ShadowModel = _shadow_model_class()
# A place in the model: (parent place, field name, index in a repeated field or None).
_Where = tuple[Any, str, int | None] | None


def _describe(where: _Where) -> str:
    parts: list[str] = []
    while where is not None:
        where, name, index = where
        parts.append(name if index is None else f"{name}[{index}]")
    return ".".join(reversed(parts)) or "model"


def _check(model: Any) -> None:
    """Visit every tensor reachable through TENSOR_HOLDERS; refuse one that is external."""
    stack: list[tuple[Any, _Where]] = [(model, None)]
    while stack:
        msg, where = stack.pop()
        kind = msg.DESCRIPTOR.name
        if kind == "TensorProto":
            if len(msg.external_data) or msg.data_location != 0:
                raise ModelUnavailable(_REFUSAL.format(where=_describe(where)))
            continue
        for name, holder in TENSOR_HOLDERS[kind].items():
            value = getattr(msg, name)
            if holder.repeated:
                stack.extend((item, (where, name, i)) for i, item in enumerate(value))
            elif msg.HasField(name):
                stack.append((value, (where, name, None)))


def ensure_self_contained(onnx_bytes: bytes) -> None:
    """Raise ModelUnavailable unless the bytes are a parseable, self-contained ONNX model."""
    if not onnx_bytes:
        raise ModelUnavailable("the model file is empty")
    model = _ShadowModel()
    try:
        model.ParseFromString(onnx_bytes)
    except message.DecodeError as exc:
        raise ModelUnavailable(
            "the model file is not a valid ONNX protobuf (malformed, or nested deeper than "
            f"protobuf allows): {exc}".replace(f"{_PACKAGE}.", "onnx.")
        ) from exc
    _check(model)
