"""What a fresh tester threw at `compile --max-drop/--min-agreement/--keep-best` and broke: labels
in another order scored by index, undefined regression figures ending in exit 70, heads verify
refuses being scored anyway, budgets silently ignored (`--max-drop none`, unsearched recipes),
an unmet budget kept without a word on stderr, unchecked API flags. Each is a whole kind here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from bertc.compiler.core.budget import BudgetNotMetError
from bertc.compiler.core.enums import TokenizerMode
from bertc.compiler.core.errors import UsageError
from bertc.compiler.pipeline import CompileOptions, compile_model
from model_factory import _write_tsv, make_checkpoint, make_fragile_classifier

STRICT = {"max_drop": 0.0, "min_agreement": 1.0}


@pytest.fixture(scope="module")
def fragile_pair(tmp_path_factory: pytest.TempPathFactory, budget_glue_dir: Path):
    """The same fragile function twice: labels in SST-2's order, and in the other order."""
    root = tmp_path_factory.mktemp("fragile-pair")
    straight = make_fragile_classifier(root / "straight", budget_glue_dir)
    swapped = make_fragile_classifier(root / "swapped", budget_glue_dir, swap_labels=True)
    return straight, swapped


def options(data_dir: Path, target: str = "ort-mobile", task: str = "sst2", **extra):
    return CompileOptions(
        target=target,
        task=task,
        data_dir=data_dir,
        calibration_samples=16,
        tokenizer=TokenizerMode.NONE,
        **extra,
    )


# ---- labels are scored by name, as verify scores them ----


@pytest.mark.parametrize("target", ["ort-mobile", "openvino"])
def test_the_same_function_with_its_labels_reordered_gets_the_same_verdict(
    fragile_pair, budget_glue_dir: Path, tmp_path: Path, target: str
) -> None:
    messages = []
    for model in fragile_pair:
        with pytest.raises(BudgetNotMetError) as caught:
            compile_model(
                str(model), tmp_path / model.name, options(budget_glue_dir, target, **STRICT)
            )
        messages.append(str(caught.value))
    # The figures are the task's, whatever order the head lists its labels in.
    drops = [message.split(" Δ ")[1].split(" pt")[0] for message in messages]
    assert drops[0] == drops[1], messages


# ---- undefined regression figures: a clear exit 12, never 70 ----


@pytest.fixture(scope="module")
def constant_stsb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An STS-B glue_data folder of 320 train pairs whose gold scores are all 2.5."""
    root = tmp_path_factory.mktemp("constant-stsb")
    header = ("index", "genre", "filename", "year", "old_index", "source1", "source2",
              "sentence1", "sentence2", "score")  # fmt: skip
    rows = [
        (str(i), "main-captions", "MSRvid", "2012test", f"{i:04d}", "none", "none",
         f"a man plays {i % 7} guitars .", f"a woman sings {i % 5} songs .", "2.500")
        for i in range(320)
    ]  # fmt: skip
    for split in ("train", "dev"):
        _write_tsv(root / "STS-B" / f"{split}.tsv", header, rows)
    return root


@pytest.mark.parametrize("target", ["ort-mobile", "openvino"])
def test_undefined_regression_figures_are_exit_12_with_one_clear_reason(
    constant_stsb: Path, tmp_path: Path, target: str
) -> None:
    model = make_checkpoint(tmp_path / "regressor", head="regression")
    out = tmp_path / "artifact"
    loose = {"max_drop": 100.0, "min_agreement": 0.0}
    with pytest.raises(BudgetNotMetError) as caught:
        compile_model(str(model), out, options(constant_stsb, target, "stsb", **loose))
    assert "undefined" in str(caught.value)
    assert not out.exists()


# ---- heads verify cannot score are not searched either: a note says why ----


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        ({"head": "multi_label"}, "multi-label head"),
        ({"labels": {0: "good", 1: "bad"}}, "cannot be matched by name"),
    ],
    ids=["multi-label", "unmatched names"],
)
def test_a_head_verify_refuses_is_not_searched(
    budget_glue_dir: Path, tmp_path: Path, settings, reason: str
) -> None:
    model = make_checkpoint(tmp_path / "model", **settings)
    result = compile_model(str(model), tmp_path / "artifact", options(budget_glue_dir, **STRICT))
    assert result.manifest["search"] is None
    assert any(reason in note for note in result.manifest["notes"]), result.manifest["notes"]


# ---- a budget the build cannot honour is said, not dropped ----


@pytest.mark.parametrize(
    "extra",
    [
        {"target": "onnx", "recipe": "library-defaults", "quantization": "static"},
        {"target": "ort-mobile", "recipe": "library-defaults", "quantization": "dynamic"},
        {"target": "openvino", "quantization": "dynamic"},
    ],
    ids=["onnx library-defaults", "ort-mobile library-defaults", "openvino dynamic"],
)
def test_an_unsearched_recipe_says_the_budget_was_not_checked(
    fragile_pair, budget_glue_dir: Path, tmp_path: Path, extra
) -> None:
    settings = {**extra, **STRICT}
    target = settings.pop("target")
    result = compile_model(
        str(fragile_pair[0]), tmp_path / "artifact", options(budget_glue_dir, target, **settings)
    )
    assert result.manifest["search"] is None
    assert any("the budget was not checked" in note for note in result.manifest["notes"])


@pytest.mark.parametrize("extra", [{"keep_best": True}, {"min_agreement": 0.2}], ids=str)
def test_budget_flags_without_a_budget_are_refused(extra) -> None:
    with pytest.raises(UsageError, match="--max-drop none"):
        CompileOptions(target="ort-mobile", max_drop=None, **extra)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("keep_best", "no"),
        ("overwrite", "no"),
        ("allow_pickle", 1),
        ("allow_tokenizer_mismatch", None),
    ],
)
def test_api_flags_must_be_booleans(field: str, value) -> None:
    with pytest.raises(UsageError, match=field):
        CompileOptions(target="ort-mobile", **{field: value})


def test_numpy_numbers_and_negative_zero_are_budgets() -> None:
    options = CompileOptions(
        target="openvino", max_drop=np.float32(0.5), min_agreement=np.float64(0.9)
    )
    assert options.max_drop == 0.5 and options.min_agreement == pytest.approx(0.9)
    assert str(CompileOptions(target="openvino", max_drop=-0.0).max_drop) == "0.0"


# ---- the CLI: an unmet budget kept by --keep-best is said on stderr, even with --json ----


def test_keep_best_of_an_unmet_budget_warns_on_stderr(
    fragile_pair, budget_glue_dir: Path, tmp_path: Path, bertc_cli
) -> None:
    out = tmp_path / "artifact"
    result = bertc_cli(
        "compile", fragile_pair[0], "--target", "ort-mobile", "--task", "sst2",
        "--data-dir", budget_glue_dir, "--calibration-samples", "16", "--tokenizer", "none",
        "--max-drop", "0", "--min-agreement", "1", "--keep-best", "--json", "--out", out,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "warning: no candidate met the accuracy budget" in result.stderr
    assert json.loads(result.stdout)["search"]["met"] is False


@pytest.mark.parametrize("flag", ["--keep-best", "--min-agreement=0.5"])
def test_budget_flags_with_max_drop_none_exit_2(flag: str, tmp_path: Path, bertc_cli) -> None:
    result = bertc_cli(
        "compile", tmp_path / "missing", "--target", "onnx", "--out", tmp_path / "o",
        "--max-drop", "none", flag,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "--max-drop none" in result.stderr.strip().splitlines()[-1]
