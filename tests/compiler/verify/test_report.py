"""Report assembly: the notes that change how to read the numbers."""

from __future__ import annotations

from bertc.calibration import get_task
from bertc.compiler.verify.model import RunEnvironment
from bertc.compiler.verify.report import environment_notes


def test_notes_flag_another_task_and_a_weaker_cpu() -> None:
    """Label order is no longer a note: verify matches labels by name (compiler/heads.py) and
    scores the permutation, or refuses (tests/adversarial/test_heads.py)."""
    manifest = {
        "model": {
            "labels": {"0": "entailment", "1": "neutral", "2": "contradiction"},
            "config": {},
        },
        "calibration": {"task": "MNLI-m"},
    }
    environment = RunEnvironment(
        target="onnx",
        runtime="onnxruntime",
        runtime_version="1",
        precision=None,
        threads_requested=None,
        runtime_threads=None,
        torch_version="2",
        build_host={"machine": "x86_64", "isa": ["avx2", "avx512_vnni"]},
        verify_host={"machine": "x86_64", "isa": ["avx2"]},
    )
    notes = environment_notes(manifest, get_task("mnli-mm"), environment)
    assert len(notes) == 2
    assert "compiled for mnli but is verified on mnli-mm" in notes[0]
    assert "lacks avx512_vnni" in notes[1]
    manifest["model"]["labels"] = {"0": "contradiction", "1": "entailment", "2": "neutral"}
    assert len(environment_notes(manifest, get_task("mnli"), environment)) == 1
