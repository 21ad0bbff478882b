"""SmoothQuant-style scale migration for dynamic INT8 (Xiao et al., 2023, arXiv 2211.10438).

Dynamic INT8 quantizes each MatMul's activation with one scale per call, so a few outlier
channels (BERT's LayerNorm and GELU outputs: up to 15x the median channel's range in MiniLM-L6)
set the step for all. Dividing channel j of the activation by s_j and multiplying row j of the
weight by s_j leaves the product unchanged and evens the ranges out, with
s_j = amax(x_j)^alpha / amax(W_j)^(1 - alpha).

Written here because onnxruntime's own `SmoothQuant` option serves `quantize_static` only (and
needs Intel Neural Compressor). In BERT the LayerNorm output also feeds the residual stream, so
the division cannot fold into LayerNorm's gamma: it is an explicit `Mul` in front of the MatMul.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

# Producers whose outputs carry the outlier channels, and that feed a weight MatMul directly.
SMOOTHED_PRODUCERS = ("LayerNormalization", "Gelu", "FastGelu", "BiasGelu")
# Scales are kept within this range so a dead channel (amax 0) cannot produce inf or 0.
SCALE_BOUNDS = (1e-5, 1e5)


def weight_matmuls_fed_by(
    model: onnx.ModelProto, producer_types: Sequence[str]
) -> list[onnx.NodeProto]:
    """MatMuls with a constant weight of their own whose activation comes straight from an op of
    one of these types."""
    producers = {output: node for node in model.graph.node for output in node.output}
    constants = {init.name for init in model.graph.initializer}
    readers = Counter(name for node in model.graph.node for name in node.input)
    return [
        node
        for node in model.graph.node
        if node.op_type == "MatMul"
        and node.input[1] in constants
        and readers[node.input[1]] == 1
        and node.input[0] in producers
        and producers[node.input[0]].op_type in producer_types
    ]


def smoothable_matmuls(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The MatMuls fed by LayerNormalization or the FFN activation (in BERT: the FFN input and
    output projections), whichever activation the checkpoint uses (patterns.py)."""
    from bertc.targets.ort.patterns import activation_fed_matmuls

    readers = Counter(name for node in model.graph.node for name in node.input)
    chosen = {node.output[0] for node in weight_matmuls_fed_by(model, SMOOTHED_PRODUCERS)}
    chosen |= {
        node.output[0] for node in activation_fed_matmuls(model) if readers[node.input[1]] == 1
    }
    return [
        node for node in model.graph.node if node.op_type == "MatMul" and node.output[0] in chosen
    ]


def channel_amax(
    path: Path, tensors: Sequence[str], samples: Sequence[Mapping[str, np.ndarray]]
) -> dict[str, np.ndarray]:
    """Per-channel max |x| of each named tensor over the samples, run with onnxruntime."""
    import onnxruntime

    model = onnx.load(str(path))
    known = {output.name for output in model.graph.output}
    model.graph.output.extend(
        onnx.ValueInfoProto(name=name) for name in tensors if name not in known
    )
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    names = [item.name for item in session.get_inputs()]
    amax: dict[str, np.ndarray] = {}
    for sample in samples:
        values = session.run(list(tensors), {name: sample[name] for name in names})
        for name, value in zip(tensors, values, strict=True):
            channels = np.abs(value.reshape(-1, value.shape[-1])).max(axis=0)
            amax[name] = channels if name not in amax else np.maximum(amax[name], channels)
    return amax


def smoothing_scales(activation_amax: np.ndarray, weight: np.ndarray, alpha: float) -> np.ndarray:
    """s_j = amax(x_j)^alpha / amax(W_j)^(1-alpha), per input channel j (a row of W)."""
    weight_amax = np.abs(weight).max(axis=1)
    scales = np.power(activation_amax, alpha) / np.power(
        np.maximum(weight_amax, SCALE_BOUNDS[0]), 1 - alpha
    )
    return np.clip(scales, *SCALE_BOUNDS).astype(np.float32)


def smoothing_statistics(
    source: Path, samples: Sequence[Mapping[str, np.ndarray]]
) -> dict[str, np.ndarray]:
    """Per-channel amax of every smoothable MatMul's activation: computed once, then shared by
    each strength `smooth_graph` is asked for."""
    targets = smoothable_matmuls(onnx.load(str(source)))
    return channel_amax(source, sorted({node.input[0] for node in targets}), samples)


def smooth_graph(
    source: Path, destination: Path, amax: Mapping[str, np.ndarray], alpha: float
) -> list[str]:
    """Write `source` with every smoothable MatMul's scales migrated, from `amax` (see
    `smoothing_statistics`); return their names."""
    model = onnx.load(str(source))
    targets = smoothable_matmuls(model)
    initializers = {init.name: init for init in model.graph.initializer}
    inserted: dict[str, onnx.NodeProto] = {}
    for node in targets:
        weight_init = initializers[node.input[1]]
        weight = numpy_helper.to_array(weight_init)
        scales = smoothing_scales(amax[node.input[0]], weight, alpha)
        weight_init.CopyFrom(numpy_helper.from_array(weight * scales[:, None], weight_init.name))
        inverse = numpy_helper.from_array(1.0 / scales, f"{node.name}/smooth_inverse_scale")
        model.graph.initializer.append(inverse)
        smoothed = f"{node.name}/smoothed_input"
        inserted[node.name] = helper.make_node(
            "Mul", [node.input[0], inverse.name], [smoothed], name=f"{node.name}/smooth"
        )
        node.input[0] = smoothed
    # Each Mul goes right before its MatMul, keeping the node list topologically sorted.
    ordered = []
    for node in model.graph.node:
        if node.name in inserted:
            ordered.append(inserted[node.name])
        ordered.append(node)
    del model.graph.node[:]
    model.graph.node.extend(ordered)
    onnx.save(model, str(destination))
    return [node.name for node in targets]
