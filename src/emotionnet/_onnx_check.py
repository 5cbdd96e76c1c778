r"""ONNX files are code: which graphs emotionnet agrees to run.

An ONNX graph can loop forever (``Loop`` with an endless condition), branch (``If``), call
local functions, or point its tensors at other files on disk (external data). None of that is
needed by an image classifier, so :func:`check_onnx_graph` refuses it before onnxruntime
sees the file: every node must be a standard ``ai.onnx`` operator from :data:`ALLOWED_OPS`,
no attribute may hold a sub-graph, the model may define no functions, and every tensor must
hold its data in the file.

The check reads the protobuf wire format directly (a few hundred fields, skipping the weight
bytes), so it costs about a millisecond and does not need the ``onnx`` package, whose import
alone takes most of a second.

Example:
    >>> check_onnx_graph(b"\x08\x07", source="a graph without nodes")  # ir_version only
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from .errors import ModelLoadError

__all__ = ["ALLOWED_OPS", "check_onnx_graph"]

ALLOWED_OPS: Final[frozenset[str]] = frozenset(
    {
        "Abs", "Add", "AveragePool", "BatchNormalization", "Cast", "Clip", "Concat",
        "Constant", "ConstantOfShape", "Conv", "ConvInteger", "DequantizeLinear", "Div",
        "Dropout", "DynamicQuantizeLinear", "Elu", "Erf", "Exp", "Flatten", "Gather", "Gemm",
        "GlobalAveragePool", "GlobalMaxPool", "HardSigmoid", "HardSwish", "Identity",
        "LeakyRelu", "Log", "LogSoftmax", "MatMul", "MatMulInteger", "Max", "MaxPool", "Mean",
        "Min", "Mul", "Neg", "Pad", "Pow", "PRelu", "QLinearAdd", "QLinearConv",
        "QLinearGlobalAveragePool", "QLinearMatMul", "QuantizeLinear", "ReduceMax",
        "ReduceMean", "Relu", "Reshape", "Resize", "Shape", "Sigmoid", "Slice", "Softmax",
        "Softplus", "Sqrt", "Squeeze", "Sub", "Sum", "Tanh", "Transpose", "Unsqueeze",
    }
)  # fmt: skip
"""Operators a graph may use: feed-forward layers of image classifiers, plain and quantized.
No control flow (``Loop``, ``If``, ``Scan``), no random numbers, no custom domains."""

_DEFAULT_DOMAINS: Final[frozenset[str]] = frozenset({"", "ai.onnx"})
_MAX_FIELDS: Final[int] = 1_000_000  # a graph of a million fields is not a face classifier

# Field numbers of onnx.proto.
_MODEL_GRAPH, _MODEL_TRAINING_INFO, _MODEL_FUNCTIONS = 7, 20, 25
_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_SPARSE_INITIALIZER = 1, 5, 15
_NODE_OP_TYPE, _NODE_ATTRIBUTE, _NODE_DOMAIN = 4, 5, 7
_ATTRIBUTE_TENSOR, _ATTRIBUTE_GRAPH, _ATTRIBUTE_TENSORS, _ATTRIBUTE_GRAPHS = 5, 6, 10, 11
_ATTRIBUTE_SPARSE_TENSOR, _ATTRIBUTE_SPARSE_TENSORS = 22, 23
_TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION = 13, 14


class _Malformed(Exception):
    pass


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise _Malformed("a truncated or overlong number")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _fields(data: memoryview) -> Iterator[tuple[int, int, memoryview | int]]:
    """``(field number, wire type, value)`` of one message: bytes for length-delimited."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            yield number, wire, value
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise _Malformed("a field longer than the file")
            yield number, wire, data[pos : pos + length]
            pos += length
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
            if pos > len(data):
                raise _Malformed("a truncated fixed-size field")
            yield number, wire, 0
        else:
            raise _Malformed(f"wire type {wire}")


def _text(value: memoryview | int) -> str:
    if isinstance(value, int):
        raise _Malformed("a number where text belongs")
    return bytes(value).decode("utf-8", errors="replace")


def _message(value: memoryview | int) -> memoryview:
    if isinstance(value, int):
        raise _Malformed("a number where a message belongs")
    return value


def _tensor_problem(tensor: memoryview) -> str | None:
    for number, _, value in _fields(tensor):
        if number == _TENSOR_EXTERNAL_DATA or (number == _TENSOR_DATA_LOCATION and value == 1):
            return "a tensor whose data lives in another file (external data)"
    return None


def _node_problem(node: memoryview) -> str | None:
    op_type, domain = "", ""
    for number, _, value in _fields(node):
        if number == _NODE_OP_TYPE:
            op_type = _text(value)
        elif number == _NODE_DOMAIN:
            domain = _text(value)
        elif number == _NODE_ATTRIBUTE:
            for attribute_number, _, item in _fields(_message(value)):
                if attribute_number in (_ATTRIBUTE_GRAPH, _ATTRIBUTE_GRAPHS):
                    return f"a sub-graph in an attribute of its {op_type or 'unnamed'!r} node"
                if attribute_number in (_ATTRIBUTE_TENSOR, _ATTRIBUTE_TENSORS):
                    problem = _tensor_problem(_message(item))
                    if problem:
                        return problem
                if attribute_number in (_ATTRIBUTE_SPARSE_TENSOR, _ATTRIBUTE_SPARSE_TENSORS):
                    return "a sparse tensor attribute"
    if domain not in _DEFAULT_DOMAINS:
        return f"the operator {op_type!r} of the custom domain {domain!r}"
    if op_type not in ALLOWED_OPS:
        return f"the operator {op_type!r}"
    return None


def _graph_problem(graph: memoryview) -> str | None:
    for number, _, value in _fields(graph):
        if number == _GRAPH_NODE:
            problem = _node_problem(_message(value))
        elif number == _GRAPH_INITIALIZER:
            problem = _tensor_problem(_message(value))
        elif number == _GRAPH_SPARSE_INITIALIZER:
            problem = "a sparse initializer"
        else:
            continue
        if problem:
            return problem
    return None


def _model_problem(data: memoryview) -> str | None:
    for count, (number, _, value) in enumerate(_fields(data)):
        if count >= _MAX_FIELDS:
            return "more than a million top-level fields"
        if number == _MODEL_GRAPH:
            problem = _graph_problem(_message(value))
            if problem:
                return problem
        elif number == _MODEL_FUNCTIONS:
            return "a model-local function (custom operator code)"
        elif number == _MODEL_TRAINING_INFO:
            return "training information (an extra graph)"
    return None


def check_onnx_graph(data: bytes | memoryview, *, source: str) -> None:
    r"""Refuse an ONNX model that uses anything beyond a feed-forward classifier's operators.

    Args:
        data: The serialized ``ModelProto`` (the content of a ``.onnx`` file).
        source: Where it comes from, for the message.

    Raises:
        ModelLoadError: If the model uses an operator outside :data:`ALLOWED_OPS` (control
            flow such as ``Loop`` included), a custom domain, a sub-graph, local functions,
            external or sparse tensors, or is not a valid ONNX protobuf.

    Example:
        >>> check_onnx_graph(b"\xff", source="junk")
        Traceback (most recent call last):
        ...
        emotionnet.errors.ModelLoadError: junk is not a valid ONNX model (a truncated or overlong number); export it again with emotionnet.export_onnx or `emotionnet export`.
    """  # noqa: E501
    try:
        problem = _model_problem(memoryview(data))
    except _Malformed as error:
        raise ModelLoadError(
            f"{source} is not a valid ONNX model ({error}); export it again with "
            "emotionnet.export_onnx or `emotionnet export`."
        ) from None
    if problem is not None:
        raise ModelLoadError(
            f"{source} is refused: it uses {problem}. emotionnet runs only feed-forward image "
            "classifiers made of standard ONNX operators (emotionnet._onnx_check.ALLOWED_OPS), "
            "so that a model file cannot loop forever or read other files; export the model "
            "again with emotionnet.export_onnx (see docs/security.rst)."
        )
