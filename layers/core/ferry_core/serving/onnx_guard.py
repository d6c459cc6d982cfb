"""Refuse ONNX files that are not self-contained, without the `onnx` package.

An ONNX tensor may point at "external data": a file path that the runtime opens and reads.
A model store that loads such a file reads whatever path the file names. Ferry serves only
self-contained models, so before a byte reaches onnxruntime this walks the protobuf wire
format of the graph (initializers, sparse initializers, node attributes, subgraphs and
functions) and refuses any tensor with `external_data` or `data_location = EXTERNAL`.
"""

from __future__ import annotations

from collections.abc import Iterator

from ferry_core.errors import ModelUnavailable

# (message, field number) -> message type of that field, for the fields that can hold tensors.
_CHILDREN: dict[str, dict[int, str]] = {
    "model": {7: "graph", 25: "function"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "function": {7: "node"},
    "sparse": {1: "tensor", 2: "tensor"},
}
_TENSOR_EXTERNAL_DATA = 13
_TENSOR_DATA_LOCATION = 14
_EXTERNAL = 1
_MAX_DEPTH = 64


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf: memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """Yield (field number, wire type, value) of one protobuf message."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield number, wire, value
        elif wire == 1:
            pos += 8
        elif wire == 2:
            size, pos = _varint(buf, pos)
            if pos + size > len(buf):
                raise ValueError("truncated field")
            yield number, wire, buf[pos : pos + size]
            pos += size
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if pos > len(buf):
            raise ValueError("truncated message")


def _walk(buf: memoryview, kind: str, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise ValueError("graph nesting too deep")
    children = _CHILDREN.get(kind, {})
    for number, wire, value in _fields(buf):
        if kind == "tensor":
            if number == _TENSOR_EXTERNAL_DATA or (
                number == _TENSOR_DATA_LOCATION and wire == 0 and value == _EXTERNAL
            ):
                raise ModelUnavailable(
                    "the model references external data files; only self-contained ONNX is served"
                )
            continue
        child = children.get(number)
        if child is not None and wire == 2:
            assert isinstance(value, memoryview)
            _walk(value, child, depth + 1)


def ensure_self_contained(onnx_bytes: bytes) -> None:
    """Raise ModelUnavailable unless the bytes are a parseable, self-contained ONNX model."""
    if not onnx_bytes:
        raise ModelUnavailable("the model file is empty")
    try:
        _walk(memoryview(onnx_bytes), "model", 0)
    except ModelUnavailable:
        raise
    except (ValueError, IndexError) as exc:
        raise ModelUnavailable(f"the model file is not a valid ONNX protobuf: {exc}") from exc
