"""Accuracy budgets the ONNX Runtime search cannot meet, and faults inside the search, over every
searched recipe (ort-mobile dynamic/static, onnx static/dynamic).

The model is built to be fragile: an untrained tiny classifier whose head's bias is set at the
median fp32 margin of the held-out slice, so about half the slice sits within INT8's noise of
the decision boundary and no candidate keeps every class. A budget of full agreement then fails
with exit 12 and writes nothing (an older output stays as it was); --keep-best writes the most
accurate candidate, marked; a quantizer failure inside the search is exit 9, nothing written.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bertc.compiler.core.budget import BudgetNotMetError
from bertc.compiler.core.enums import QuantizationMode, TokenizerMode
from bertc.compiler.core.errors import QuantizationError
from bertc.compiler.pipeline import CompileOptions, compile_model
from model_factory import make_fragile_classifier

CALIBRATION = 16
RECIPES = [
    ("ort-mobile", "dynamic"),
    ("ort-mobile", "static"),
    ("onnx", "static"),
    ("onnx", "dynamic"),
]
IDS = [f"{target}-{mode}" for target, mode in RECIPES]


@pytest.fixture(scope="module")
def fragile_classifier(tmp_path_factory: pytest.TempPathFactory, budget_glue_dir: Path) -> Path:
    """An untrained 2-layer classifier with its decision boundary at the slice's median margin."""
    return make_fragile_classifier(tmp_path_factory.mktemp("fragile") / "model", budget_glue_dir)


def options(data_dir: Path, target: str, mode: str, **budget) -> CompileOptions:
    return CompileOptions(
        target=target,
        task="sst2",
        data_dir=data_dir,
        quantization=QuantizationMode(mode),
        calibration_samples=CALIBRATION,
        tokenizer=TokenizerMode.NONE,
        **budget,
    )


STRICT = {"max_drop": 0.0, "min_agreement": 1.0}


@pytest.mark.parametrize(("target", "mode"), RECIPES, ids=IDS)
def test_an_unmet_budget_is_exit_12_and_writes_nothing(
    fragile_classifier: Path, budget_glue_dir: Path, tmp_path: Path, target: str, mode: str
) -> None:
    out = tmp_path / "artifact"
    with pytest.raises(BudgetNotMetError) as caught:
        compile_model(
            str(fragile_classifier), out, options(budget_glue_dir, target, mode, **STRICT)
        )
    assert caught.value.exit_code == 12
    assert "no INT8 candidate met the accuracy budget" in str(caught.value)
    assert "--keep-best" in str(caught.value)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no staging left behind


@pytest.mark.parametrize(("target", "mode"), RECIPES, ids=IDS)
def test_keep_best_writes_the_most_accurate_candidate_marked(
    fragile_classifier: Path, budget_glue_dir: Path, tmp_path: Path, target: str, mode: str
) -> None:
    out = tmp_path / "artifact"
    settings = options(budget_glue_dir, target, mode, keep_best=True, **STRICT)
    result = compile_model(str(fragile_classifier), out, settings)
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    search = manifest["search"]
    assert search["met"] is False and search["kept_best"] is True
    assert not any(c["meets_budget"] for c in search["candidates"])
    best = max(search["candidates"], key=lambda c: c["figures"]["agreement"])
    chosen = next(c for c in search["candidates"] if c["name"] == search["chosen"])
    assert chosen["figures"]["agreement"] == best["figures"]["agreement"]
    assert any("NOT met" in note for note in manifest["notes"])
    assert result.manifest["search"]["chosen"] == search["chosen"]


def test_an_unmet_budget_keeps_the_older_output(
    fragile_classifier: Path, budget_glue_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "artifact"
    loose = options(budget_glue_dir, "onnx", "dynamic", max_drop=100.0, min_agreement=0.0)
    compile_model(str(fragile_classifier), out, loose)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    strict = options(budget_glue_dir, "onnx", "dynamic", overwrite=True, **STRICT)
    with pytest.raises(BudgetNotMetError):
        compile_model(str(fragile_classifier), out, strict)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_the_cli_says_it_in_one_line_with_exit_12(
    fragile_classifier: Path, budget_glue_dir: Path, tmp_path: Path, bertc_cli
) -> None:
    out = tmp_path / "artifact"
    done = bertc_cli(
        "compile", fragile_classifier, "--target", "onnx", "--quantization", "dynamic",
        "--task", "sst2", "--data-dir", budget_glue_dir, "--calibration-samples", CALIBRATION,
        "--tokenizer", "none", "--max-drop", "0", "--min-agreement", "1", "--out", out,
    )  # fmt: skip
    assert done.returncode == 12, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and "no INT8 candidate met" in errors[0]
    assert "Traceback" not in done.stderr
    assert not out.exists()


@pytest.mark.parametrize(("target", "mode"), RECIPES, ids=IDS)
def test_a_quantizer_failure_inside_the_search_is_exit_9_and_writes_nothing(
    fragile_classifier: Path,
    budget_glue_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    target: str,
    mode: str,
) -> None:
    """The ranking's single-node graphs fail (a quantizer raising a bare Exception, as
    onnxruntime's do): the compile names the stage and leaves nothing."""
    import onnxruntime.quantization as quantization

    for name in ("quantize_dynamic", "quantize_static"):
        real = getattr(quantization, name)

        def failing(*args, _real=real, **kwargs):
            if kwargs.get("nodes_to_quantize"):
                raise Exception("simulated quantizer failure")  # noqa: TRY002
            return _real(*args, **kwargs)

        monkeypatch.setattr(quantization, name, failing)
    out = tmp_path / "artifact"
    with pytest.raises(QuantizationError) as caught:
        compile_model(
            str(fragile_classifier), out, options(budget_glue_dir, target, mode, **STRICT)
        )
    assert caught.value.exit_code == 9
    assert "simulated quantizer failure" in str(caught.value)
    assert not out.exists()
