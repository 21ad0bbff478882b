"""Read ORT-format models back through onnxruntime's own flatbuffer bindings, so tests can see
what a `.ort` file holds without trusting the code that wrote its operator config."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any


def _session(path: Path):
    import onnxruntime.tools.ort_format_model  # noqa: F401  (puts ort_flatbuffers_py on sys.path)
    from ort_flatbuffers_py.fbs.InferenceSession import InferenceSession

    return InferenceSession.GetRootAsInferenceSession(bytearray(Path(path).read_bytes()), 0)


def _nodes(path: Path) -> list:
    graph = _session(path).Model().Graph()
    return [graph.Nodes(index) for index in range(graph.NodesLength())]


def ort_model_operators(path: Path) -> set[tuple[str, int, str]]:
    """(domain, opset, op type) of every node, as a reduced build's config must name them."""
    return {
        (node.Domain().decode() or "ai.onnx", node.SinceVersion(), node.OpType().decode())
        for node in _nodes(path)
    }


def ort_model_op_types(path: Path) -> list[str]:
    return [node.OpType().decode() for node in _nodes(path)]


def _tensor(tensor) -> tuple:
    raw = tensor.RawDataAsNumpy().tobytes() if tensor.RawDataLength() else b""
    dims = [tensor.Dims(i) for i in range(tensor.DimsLength())]
    return (tensor.Name(), tensor.DataType(), dims, hashlib.sha256(raw).hexdigest())


def _attribute(attribute) -> tuple:
    tensor = attribute.T()
    return (
        attribute.Name(),
        attribute.Type(),
        attribute.I(),
        attribute.F(),
        attribute.S(),
        [attribute.Ints(i) for i in range(attribute.IntsLength())],
        [attribute.Floats(i) for i in range(attribute.FloatsLength())],
        _tensor(tensor) if tensor is not None else None,
    )


def ort_model_contents(path: Path) -> dict[str, Any]:
    """Everything a runtime reads from the file, independent of where the writer put it:
    opsets, nodes with their attributes and wiring, initializer bytes, kernel type strings."""
    session = _session(path)
    model = session.Model()
    graph = model.Graph()
    nodes = []
    for node in (graph.Nodes(index) for index in range(graph.NodesLength())):
        attributes = [_attribute(node.Attributes(j)) for j in range(node.AttributesLength())]
        nodes.append(
            (
                node.Name(),
                node.Domain(),
                node.OpType(),
                node.SinceVersion(),
                [node.Inputs(j) for j in range(node.InputsLength())],
                [node.Outputs(j) for j in range(node.OutputsLength())],
                attributes,
            )
        )
    initializers = []
    for tensor in (graph.Initializers(index) for index in range(graph.InitializersLength())):
        initializers.append(_tensor(tensor))
    resolver = session.KernelTypeStrResolver()
    kernel_types = []
    for entry in (
        resolver.OpKernelTypeStrArgs(i) for i in range(resolver.OpKernelTypeStrArgsLength())
    ):
        for arg_set in (entry.KernelTypeStrArgs(j) for j in range(entry.KernelTypeStrArgsLength())):
            arguments = [arg_set.Args(k) for k in range(arg_set.ArgsLength())]
            kernel_types.append(
                (
                    entry.OpId(),
                    arg_set.KernelTypeStr(),
                    [(a.ArgType(), a.Index()) for a in arguments],
                )
            )
    return {
        "opsets": [
            (model.OpsetImport(i).Domain(), model.OpsetImport(i).Version())
            for i in range(model.OpsetImportLength())
        ],
        "nodes": nodes,
        "node_args": sorted(graph.NodeArgs(i).Name() for i in range(graph.NodeArgsLength())),
        "initializers": initializers,
        "kernel_types": sorted(kernel_types),
    }
