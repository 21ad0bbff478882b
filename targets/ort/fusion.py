"""ONNX Runtime's transformer fusions for the `ort-mobile` dynamic recipe, gated on parity.

`onnxruntime.transformers.optimizer` folds each layer's self-attention into one com.microsoft
`Attention` op, which the dynamic quantizer turns into `QAttention` (one activation quantization
for Q, K and V). Three of its fusions stay off, each for a measured reason (onnxruntime 1.32,
MiniLM-L6 SST-2, 2 threads, batch 1 at real lengths):

- SkipLayerNormalization: ORT's CPU kernel takes 27 µs on a 25×384 input where the Add and
  LayerNormalization it replaces take 13.5 µs (110 vs 42 µs at 128 tokens), so the graph runs
  ~12% slower with it. The ORT-format conversion keeps the session-level fusion off too.
- EmbedLayerNormalization: its embedding tables are no longer Gathers the quantizer sees, and
  agreement with fp32 fell from 99.08% to 98.74%; Optimum keeps it off for the same reason.
- BiasGelu: it takes the bias Add away from the MatMul before it, which the dynamic quantizer
  would otherwise fold into DynamicQuantizeMatMul's bias input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from bertc.compiler.core.errors import ParityError
from bertc.compiler.core.graph import DEFAULT_PARITY_ATOL, OnnxGraph

# Session-level fusions a converted model must not get back when ORT optimizes it.
SLOWER_SESSION_FUSIONS = ("SkipLayerNormFusion",)


@dataclass(frozen=True)
class FusionReport:
    """What the optimizer fused, and how far the fused graph's outputs moved."""

    fused_ops: Mapping[str, int]
    max_abs_diff: float
    samples_checked: int


def transformer_fusion_options():
    """The optimizer's BERT options with the three fusions above turned off."""
    from onnxruntime.transformers.fusion_options import FusionOptions

    options = FusionOptions("bert")
    options.enable_skip_layer_norm = False
    options.enable_bias_skip_layer_norm = False
    options.enable_embed_layer_norm = False
    options.enable_bias_gelu = False
    return options


def fuse_transformer(
    graph: OnnxGraph,
    path: Path,
    samples: Sequence[Mapping[str, np.ndarray]],
    num_heads: int,
    hidden_size: int,
    tolerance: float = DEFAULT_PARITY_ATOL,
) -> tuple[OnnxGraph, FusionReport]:
    """Write the fused graph to `path`; fail if it moves any output by more than `tolerance`.

    Heads and hidden size come from the checkpoint's config: onnxruntime 1.32 cannot read them
    from a transformers 5 export's reshapes and would leave attention unfused. Offline
    optimization only (`opt_level=0`): ORT's own session fusions run when the model is loaded
    or converted, where targets/ort_mobile.py chooses them.
    """
    from onnxruntime.transformers.optimizer import optimize_model

    optimized = optimize_model(
        str(graph.path),
        model_type="bert",
        num_heads=num_heads,
        hidden_size=hidden_size,
        optimization_options=transformer_fusion_options(),
        opt_level=0,
    )
    optimized.save_model_to_file(str(path))
    fused = OnnxGraph(
        path, graph.input_names, graph.output_names, graph.opset, graph.parity, graph.rewrites
    )
    diff = max_output_difference(graph.path, path, samples)
    if diff > tolerance:
        raise ParityError(
            f"ONNX Runtime's transformer fusions moved the outputs by {diff:.2e} "
            f"(tolerance {tolerance:.0e}); compile with --quantization static instead"
        )
    fused_ops = {op: n for op, n in optimized.get_fused_operator_statistics().items() if n}
    return fused, FusionReport(fused_ops, diff, len(samples))


def max_output_difference(
    reference: Path, candidate: Path, samples: Sequence[Mapping[str, np.ndarray]]
) -> float:
    """Largest absolute difference between two graphs' outputs over the samples, with ORT."""
    worst = 0.0
    for expected, actual in zip(
        session_outputs(reference, samples),
        session_outputs(candidate, samples, SLOWER_SESSION_FUSIONS),
        strict=True,
    ):
        for want, got in zip(expected, actual, strict=True):
            worst = max(worst, float(np.max(np.abs(want - got))))
    return worst


def session_outputs(
    path: Path, samples: Sequence[Mapping[str, np.ndarray]], disabled_fusions: Sequence[str] = ()
) -> list[list[np.ndarray]]:
    """Every output of the graph for each sample, on ORT's CPU provider with those session
    fusions off (as the artifact will run)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(
        str(path), providers=["CPUExecutionProvider"], disabled_optimizers=list(disabled_fusions)
    )
    names = [item.name for item in session.get_inputs()]
    return [session.run(None, {name: sample[name] for name in names}) for sample in samples]
