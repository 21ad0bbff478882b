"""Where BERT's layers are in an ONNX graph, whatever FFN activation the checkpoint uses.

The recipes in quantize.py and smoothing.py treat the FFN output projections apart (16-bit
activations, SmoothQuant, the fp32 sensitivity search); this module finds them for every
`hidden_act` in compiler/core/activations.py, in the exported graph and in ONNX Runtime's fused
one, and says so when it finds fewer than the graph has layers.
"""

from __future__ import annotations

import onnx
from bertc.compiler.core.activations import ACTIVATION_OP_TYPES, ELEMENTWISE_OP_TYPES

# Kept for readers of the old name: every FFN activation's op types, fused or not.
GELU_OP_TYPES = tuple(sorted(ACTIVATION_OP_TYPES))
# At most this many element-wise nodes are crossed walking back from a MatMul's input (the
# tanh GELU is 8 nodes deep, mish 4).
_ACTIVATION_SEARCH_NODES = 32


def activation_fed_matmuls(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The weight MatMuls whose activation input is made by an FFN activation: the FFN output
    projections, whatever `hidden_act` the checkpoint uses (compiler/core/activations.py).

    Walks back from each weight MatMul's activation input through element-wise ops only
    (ELEMENTWISE_OP_TYPES) and counts it when an activation op (ACTIVATION_OP_TYPES) lies on
    the way: erf GELU, tanh GELU (ORT's FastGelu when fused), QuickGelu, SiLU, Mish, ReLU. The
    walk stops at LayerNormalization, Reshape, Gemm, another MatMul and anything else, so the
    Q/K/V and FFN input projections (LayerNorm-fed) and the pooler's Tanh (a Gemm reads it) are
    never taken for one.
    """
    producers = {output: node for node in model.graph.node for output in node.output}
    constants = {init.name for init in model.graph.initializer}

    def activation_behind(tensor: str) -> bool:
        pending, seen = [tensor], set()
        while pending and len(seen) < _ACTIVATION_SEARCH_NODES:
            node = producers.get(pending.pop())
            if node is None or node.name in seen or node.op_type not in ELEMENTWISE_OP_TYPES:
                continue
            if node.op_type in ACTIVATION_OP_TYPES:
                return True
            seen.add(node.name)
            pending.extend(name for name in node.input if name and name not in constants)
        return False

    return [
        node
        for node in model.graph.node
        if node.op_type == "MatMul"
        and len(node.input) > 1
        and node.input[1] in constants
        and activation_behind(node.input[0])
    ]


def missing_ffn_note(found: int, layers: int, what: str) -> str | None:
    """A note when a recipe found fewer FFN output projections than the graph has layers."""
    if found >= layers:
        return None
    return (
        f"{what}: found {found} FFN output projection(s) for {layers} layer(s); the FFN "
        "activation's pattern was not recognised, so those layers got the default treatment"
    )


def encoder_layers(model: onnx.ModelProto) -> int:
    """Layers of the exported encoder: one LayerNormalization after attention and one after the
    FFN per layer, plus the embeddings' (exported and fused graphs alike)."""
    norms = sum(
        node.op_type in ("LayerNormalization", "SkipLayerNormalization")
        for node in model.graph.node
    )
    return max(0, (norms - 1) // 2)
