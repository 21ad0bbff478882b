"""Every FFN activation bertc supports, through OpenVINO's static NNCF recipe.

OpenVINO's ONNX frontend fuses each variant into one op (Gelu in erf or tanh mode, Swish, Mish,
Relu); NNCF's transformer model type keeps that op in floating point and quantizes the FFN
output projection's input after it. Parametrized over `SUPPORTED_HIDDEN_ACTS` with a tiny seeded
model each, plus one activation the tables do not know, which gets a note.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from bertc.compiler.core.activations import OPENVINO_ACTIVATION_TYPES, SUPPORTED_HIDDEN_ACTS
from bertc.compiler.export import encode
from bertc.compiler.loading import load_model
from bertc.targets.loader import load
from bertc.targets.ov.quantize import ffn_activation_count
from model_factory import TINY_CONFIG, make_checkpoint, sst2_rows

LAYERS = TINY_CONFIG["num_hidden_layers"]
INT8_LOGIT_ATOL = 0.05  # untrained tiny logits are ~0.1
TEXTS = [text for text, _ in sst2_rows()[:6]]


def reads_fake_quantize(node) -> bool:
    """A FakeQuantize feeds this op, directly or through a dequantizing Multiply/Convert."""
    for index in range(node.get_input_size()):
        source = node.input_value(index).get_node()
        for _ in range(3):
            if source.get_type_name() == "FakeQuantize":
                return True
            if source.get_type_name() not in ("Multiply", "Convert") or not source.get_input_size():
                break
            source = source.input_value(0).get_node()
    return False


def consumers_through_multiply(op) -> set[str]:
    """Op types reading `op`'s output, through SmoothQuant's Multiply and gelu_10's Clamp."""
    found, pending = set(), [op]
    for _ in range(3):
        readers = [t.get_node() for node in pending for t in node.output(0).get_target_inputs()]
        found |= {reader.get_type_name() for reader in readers}
        pending = [r for r in readers if r.get_type_name() in ("Multiply", "Clamp")]
    return found


def compiled_ir(compile_once, tmp_path_factory, act: str):
    import openvino

    checkpoint = make_checkpoint(tmp_path_factory.mktemp(f"ov-{act}") / "c", {"hidden_act": act})
    result = compile_once(checkpoint, "openvino")
    model = openvino.Core().read_model(str(result.artifact_dir / "model.xml"))
    return checkpoint, result, model


@pytest.mark.parametrize("act", SUPPORTED_HIDDEN_ACTS)
def test_nncf_keeps_each_activation_fp32_and_quantizes_the_projection_after_it(
    compile_once, tmp_path_factory, act: str
) -> None:
    checkpoint, result, model = compiled_ir(compile_once, tmp_path_factory, act)
    activations = [
        op for op in model.get_ordered_ops() if op.get_type_name() in OPENVINO_ACTIVATION_TYPES
    ]
    assert ffn_activation_count(model) == len(activations) == LAYERS
    for op in activations:
        assert not reads_fake_quantize(op), op.get_friendly_name()
        # the FFN output projection reads the activation (SmoothQuant's Multiply between)
        # through a FakeQuantize: 8 bits
        assert "FakeQuantize" in consumers_through_multiply(op)
    summary = result.manifest["quantization"]
    kind = activations[0].get_type_name()
    assert summary.fp32_ops[kind] == LAYERS and kind in summary.fp32_reasons
    assert not any("NNCF recipe" in note for note in result.manifest["notes"])
    loaded = load_model(str(checkpoint))
    artifact = load(result.artifact_dir)
    for text in TEXTS:
        batch = encode(loaded, [text], padding_to=None)
        with torch.no_grad():
            want = loaded.module(*(torch.from_numpy(batch[n]) for n in loaded.input_names))
        got = artifact.logits([text])
        assert np.abs(got - want.numpy()).max() <= INT8_LOGIT_ATOL


def test_an_activation_openvino_does_not_fuse_gets_a_note(
    compile_once, tmp_path_factory, without_the_contract: None
) -> None:
    """Past the contract (which refuses hardswish, exit 5), NNCF's recipe says it found none."""
    _, result, model = compiled_ir(compile_once, tmp_path_factory, "hardswish")
    ops = Counter(op.get_type_name() for op in model.get_ordered_ops())
    assert ffn_activation_count(model) == 0 and ops["HSwish"] == LAYERS
    notes = [note for note in result.manifest["notes"] if "NNCF recipe" in note]
    assert len(notes) == 1 and "found 0 FFN activation op(s)" in notes[0]
