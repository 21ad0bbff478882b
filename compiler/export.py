"""Export a loaded model to fp32 ONNX and gate it on parity with PyTorch.

The gate runs PyTorch and ONNX Runtime on real sentences over a grid of batch sizes and sequence
lengths, collects every miss, and fails the build with the numbers: a graph that traced a shape
as a constant (transformers' mask code warns that it may) must never reach quantization.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from bertc.compiler.core.errors import ParityError
from bertc.compiler.core.graph import DEFAULT_PARITY_ATOL, OnnxGraph, ParityResult
from bertc.compiler.loading import ClassifierForExport, LoadedModel, model_inputs

# Opset 17 is the lowest with LayerNormalization as one op, and the ORT mobile converter and
# OpenVINO both read it.
DEFAULT_OPSET = 17
# Optimum's tolerance for BERT (optimum/exporters/onnx/model_configs.py: ATOL_FOR_VALIDATION).

# Real sentences of different lengths: parity on random ids can miss errors that only show on
# text-like attention patterns.
PARITY_SENTENCES = (
    "a gorgeous , witty , seductive movie .",
    "it 's a charming and often affecting journey .",
    "unflinchingly bleak and desperate",
    "the film is strictly routine .",
    "a sometimes tedious film .",
    "this is a film well worth seeing , talking and singing heads and all , and it is "
    "the kind of movie that makes you want to see it again with friends who have not yet "
    "seen it , because its warmth and its wit are rare in any season .",
    "ok",
    "Édith Piaf sang in Paris; 東京 is far away, and the résumé was 3.5 pages long!",
)
PARITY_BATCH_SIZES = (1, 2, 4, 8)


FIRST_TOKEN_REWRITE = "last layer's feed-forward block on the first ([CLS]) position only"


class FirstTokenLastLayer(torch.nn.Module):
    """A BERT layer whose output keeps only the first position, cut right after attention.

    A sequence classifier reads the pooler, and the pooler reads position 0 of the last layer
    alone; so in the last layer attention still sees every position (keys and values need them)
    but the feed-forward block runs on one row instead of all. Exact: the layer's own modules on
    the same row. The cut sits after the attention block so ONNX Runtime's attention fusion still
    matches it (a cut before the output projection leaves the attention unfused). MiniLM-L6 fp32
    at SST-2 lengths: ONNX Runtime 2.66-2.70 -> 2.52-2.53 ms, OpenVINO on dynamic shapes
    3.05-3.10 -> 2.91-2.97 ms.
    """

    def __init__(self, layer: torch.nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, hidden_states, attention_mask=None, *args, **kwargs):  # noqa: D102
        attention_output = self.layer.attention(hidden_states, attention_mask)[0]
        return self.layer.feed_forward_chunk(attention_output[:, :1])


def module_for_export(loaded: LoadedModel) -> tuple[torch.nn.Module, tuple[str, ...]]:
    """The module to trace and the exact rewrites applied to it.

    Sequence classifiers get `FirstTokenLastLayer` on a copy (the loaded module stays the parity
    gate's reference); sentence encoders read every position and are traced as loaded.
    """
    module = loaded.module
    if not isinstance(module, ClassifierForExport) or not hasattr(module.model, "bert"):
        return module, ()
    rewritten = copy.deepcopy(module)
    layers = rewritten.model.bert.encoder.layer
    layers[-1] = FirstTokenLastLayer(layers[-1])
    rewritten.eval()
    return rewritten, (FIRST_TOKEN_REWRITE,)


def export_onnx(loaded: LoadedModel, path: Path, opset: int = DEFAULT_OPSET) -> OnnxGraph:
    """Trace the fp32 module (after `module_for_export`) to ONNX with dynamic batch and sequence
    axes.

    Uses the TorchScript exporter (`dynamo=False`): with torch 2.13 the dynamo exporter writes
    external data that onnxruntime's quantization pre-processing cannot find (FIELD-NOTES).
    """
    module, rewrites = module_for_export(loaded)
    example = encode(loaded, PARITY_SENTENCES[:2], padding_to=None)
    dynamic_axes = {name: {0: "batch", 1: "sequence"} for name in loaded.input_names}
    for name in loaded.output_names:
        dynamic_axes[name] = (
            {0: "batch", 1: "sequence"} if name == "last_hidden_state" else {0: "batch"}
        )
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer chatter; the parity gate is the real check
        torch.onnx.export(
            module,
            tuple(torch.from_numpy(example[name]) for name in loaded.input_names),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=list(loaded.input_names),
            output_names=list(loaded.output_names),
            dynamic_axes=dynamic_axes,
            do_constant_folding=True,
        )
    onnx.checker.check_model(str(path))
    return OnnxGraph(path, loaded.input_names, loaded.output_names, opset, rewrites=rewrites)


def encode(loaded: LoadedModel, sentences, padding_to: int | None) -> dict[str, np.ndarray]:
    """Tokenize to int64 numpy arrays named as the graph's inputs (zero token types where the
    tokenizer gives none)."""
    encoded = loaded.tokenizer(
        list(sentences),
        padding="max_length" if padding_to else True,
        max_length=padding_to or loaded.max_sequence_length,
        truncation=True,
        return_tensors="np",
    )
    return model_inputs(encoded, loaded.input_names)


def parity_batches(loaded: LoadedModel) -> list[dict[str, np.ndarray]]:
    """Batches at several sizes, padded to their longest sentence and to the maximum length."""
    batches = []
    for batch_size in PARITY_BATCH_SIZES:
        sentences = PARITY_SENTENCES[-batch_size:]
        batches.append(encode(loaded, sentences, padding_to=None))
    batches.append(encode(loaded, PARITY_SENTENCES[:3], padding_to=loaded.max_sequence_length))
    return batches


def check_parity(
    loaded: LoadedModel, graph: OnnxGraph, tolerance: float = DEFAULT_PARITY_ATOL
) -> OnnxGraph:
    """Run both frameworks on every parity batch; raise one ParityError naming each miss."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(graph.path), providers=["CPUExecutionProvider"])
    worst = 0.0
    shapes = []
    misses = []
    for batch in parity_batches(loaded):
        with torch.no_grad():
            expected = loaded.module(*(torch.from_numpy(batch[name]) for name in graph.input_names))
        expected = expected if isinstance(expected, tuple) else (expected,)
        actual = session.run(list(graph.output_names), batch)
        shape = tuple(batch["input_ids"].shape)
        shapes.append(shape)
        for name, reference, value in zip(graph.output_names, expected, actual, strict=True):
            if reference.shape != value.shape:
                misses.append(
                    f"{name} at {shape}: shape {tuple(value.shape)} != {tuple(reference.shape)}"
                )
                continue
            difference = float(np.max(np.abs(reference.numpy() - value)))
            worst = max(worst, difference)
            if not difference <= tolerance:  # also catches NaN
                misses.append(f"{name} at batch×length {shape}: max |Δ| {difference:.2e}")
    if misses:
        raise ParityError(
            f"ONNX export does not match PyTorch within {tolerance:g}: " + "; ".join(misses)
        )
    parity = ParityResult(worst, tolerance, tuple(shapes), True)
    return dataclasses.replace(graph, parity=parity)
