"""`prune_model`: mask structure per pattern, zeros held through fine-tuning, untouched layers,
a checkpoint that compiles with its zeros, determinism, and one-line errors for bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from bertc.calibration import get_task
from bertc.compiler.core.errors import OutputExistsError, UsageError
from bertc.compiler.training import prune
from bertc.compiler.training.finetune import prepare_run, train_settings
from bertc.compiler.training.loop import load_classifier
from bertc.compiler.training.prune import (
    PruneOptions,
    apply_masks,
    compute_masks,
    encoder_linears,
    fine_tune,
    n_of_m_mask,
    parse_pattern,
    prune_model,
)
from model_factory import make_checkpoint
from safetensors.torch import load_file

# q, k, v, attention output, intermediate, output: six per layer of the 2-layer tiny model.
ENCODER_MATRICES_PER_LAYER = 6
TRAIN_STEPS = 10


def tiny_options(glue_data_dir: Path, **overrides) -> PruneOptions:
    settings = dict(
        pattern="2:4",
        task="sst2",
        data_dir=glue_data_dir,
        max_steps=TRAIN_STEPS,
        batch_size=8,
        learning_rate=1e-3,  # large, so ten steps visibly move every kept weight
        seed=0,
        log_every=5,
    )
    settings.update(overrides)
    return PruneOptions(**settings)


@pytest.fixture(scope="module")
def pruned_2_4(tmp_path_factory, tiny_classifier: Path, glue_data_dir: Path):
    """The tiny classifier pruned 2:4 and fine-tuned for ten steps, and its progress lines."""
    messages: list[str] = []
    out = tmp_path_factory.mktemp("pruned") / "tiny-2of4"
    result = prune_model(str(tiny_classifier), out, tiny_options(glue_data_dir), messages.append)
    return result, messages


def tiny_model(source: Path):
    torch.manual_seed(0)
    model, *_ = load_classifier(str(source), get_task("sst2"))
    return model


def encoder_weights(model) -> dict[str, torch.Tensor]:
    return {
        f"{name}.weight": module.weight.detach().clone()
        for name, module in encoder_linears(model).items()
    }


def test_only_the_encoder_linears_are_pruned(tiny_classifier: Path):
    names = list(encoder_weights(tiny_model(tiny_classifier)))
    assert len(names) == 2 * ENCODER_MATRICES_PER_LAYER
    assert all(name.startswith("bert.encoder.layer.") for name in names)
    assert not [name for name in names if "embeddings" in name or "pooler" in name]


@pytest.mark.parametrize("pattern, n, m", [("1:2", 1, 2), ("2:4", 2, 4), ("4:8", 4, 8)])
def test_n_of_m_keeps_exactly_n_largest_of_every_m_inputs(tiny_classifier, pattern, n, m):
    model = tiny_model(tiny_classifier)
    dense = encoder_weights(model)
    assert all(bool((weight != 0).all()) for weight in dense.values()), "dense weights expected"
    apply_masks(model, compute_masks(model, parse_pattern(pattern)))
    for name, weight in encoder_weights(model).items():
        groups = weight.reshape(weight.shape[0], -1, m)
        assert ((groups != 0).sum(-1) == n).all(), name
        # The kept weights are the n largest of their group, unchanged.
        original = dense[name].reshape(groups.shape).abs()
        kept_min = torch.where(groups != 0, original, torch.inf).min(-1).values
        pruned_max = torch.where(groups == 0, original, -torch.inf).max(-1).values
        assert (kept_min >= pruned_max).all(), name
        assert torch.equal(groups[groups != 0], dense[name].reshape(groups.shape)[groups != 0])


def test_unstructured_zeros_the_smallest_80_percent_of_each_matrix(tiny_classifier):
    model = tiny_model(tiny_classifier)
    dense = encoder_weights(model)
    apply_masks(model, compute_masks(model, parse_pattern("unstructured:0.8")))
    for name, weight in encoder_weights(model).items():
        assert int((weight == 0).sum()) == round(0.8 * weight.numel()), name
        magnitude = dense[name].abs()
        assert magnitude[weight != 0].min() >= magnitude[weight == 0].max(), name


def test_block_4x1_zeros_whole_blocks_of_four_output_rows(tiny_classifier):
    model = tiny_model(tiny_classifier)
    dense = encoder_weights(model)
    apply_masks(model, compute_masks(model, parse_pattern("block:4x1")))
    for name, weight in encoder_weights(model).items():
        rows, columns = weight.shape
        # blocks[b, r, c]: output rows 4b..4b+3 of input column c.
        blocks = weight.reshape(rows // 4, 4, columns)
        zero_blocks = (blocks == 0).all(dim=1)
        assert ((blocks != 0).all(dim=1) | zero_blocks).all(), f"{name}: a block is half zero"
        assert int(zero_blocks.sum()) == rows // 4 * columns // 2, name
        norms = dense[name].reshape(rows // 4, 4, columns).norm(dim=1)
        assert norms[~zero_blocks].min() >= norms[zero_blocks].max(), name


def test_pruned_weights_stay_exactly_zero_through_fine_tuning(
    tiny_classifier, glue_data_dir, monkeypatch
):
    options = tiny_options(glue_data_dir, max_steps=3)

    def train(reapply: bool) -> dict[str, torch.Tensor]:
        run = prepare_run(str(tiny_classifier), options)  # seeds torch with options.seed
        masks = compute_masks(run.model, parse_pattern("2:4"))
        apply_masks(run.model, masks)
        with monkeypatch.context() as patch:
            if not reapply:
                patch.setattr(prune, "apply_masks", lambda model, masks: None)
            fine_tune(run, masks, train_settings(str(tiny_classifier), options, run))
        return {name: encoder_weights(run.model)[name][~mask] for name, mask in masks.items()}

    held = train(reapply=True)
    assert all(bool((values == 0).all()) for values in held.values())
    # Without the re-apply AdamW's update (the gradient is not zero there) moves every zero.
    drifted = train(reapply=False)
    assert all(bool((values != 0).any()) for values in drifted.values())


def test_saved_checkpoint_keeps_the_mask_and_is_fine_tuned(pruned_2_4, tiny_classifier):
    result, messages = pruned_2_4
    source = load_file(str(tiny_classifier / "model.safetensors"))
    saved = load_file(str(result.out_dir / "model.safetensors"))
    pruned_names = sorted(result.matrix_sparsity)
    assert len(pruned_names) == 2 * ENCODER_MATRICES_PER_LAYER
    for name in pruned_names:
        weight = saved[name]
        groups = weight.reshape(weight.shape[0], -1, 4)
        assert ((groups != 0).sum(-1) == 2).all(), name
        # The same positions as the mask of the starting weights: zeros never moved.
        expected = compute_masks_for(source[name])
        assert torch.equal(weight != 0, expected), name
        assert not torch.equal(weight[expected], source[name][expected]), f"{name} not trained"
        assert result.matrix_sparsity[name] == 0.5
    assert result.encoder_sparsity == 0.5
    assert result.steps == TRAIN_STEPS
    assert any(message.startswith(f"step {TRAIN_STEPS}/{TRAIN_STEPS}") for message in messages)


def compute_masks_for(weight: torch.Tensor) -> torch.Tensor:
    return n_of_m_mask(weight, 2, 4)


def test_embeddings_pooler_and_classifier_gain_no_zeros(pruned_2_4, tiny_classifier):
    result, _ = pruned_2_4
    source = load_file(str(tiny_classifier / "model.safetensors"))
    saved = load_file(str(result.out_dir / "model.safetensors"))
    others = sorted(set(saved) - set(result.matrix_sparsity))
    assert any(name.startswith("bert.embeddings.") for name in others)
    assert {"bert.pooler.dense.weight", "classifier.weight"} <= set(others)
    for name in others:
        assert int((saved[name] == 0).sum()) <= int((source[name] == 0).sum()), name


def test_checkpoint_config_and_report(pruned_2_4):
    result, _ = pruned_2_4
    config = json.loads((result.out_dir / "config.json").read_text(encoding="utf-8"))
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert config["finetuning_task"] == "sst2"
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    assert config["label2id"] == {"negative": 0, "positive": 1}
    report = json.loads((result.out_dir / "prune.json").read_text(encoding="utf-8"))
    assert report["pattern"]["pattern"] == "2:4"
    assert report["matrix_sparsity"] == dict(result.matrix_sparsity)
    training = report["training"]
    assert (training["steps"], training["batch_size"], training["seed"]) == (TRAIN_STEPS, 8, 0)
    assert training["train_samples"] == 40 and training["learning_rate"] == 1e-3
    metrics = report["dev_metrics"]
    assert set(metrics) == {"dense", "pruned_before_finetune", "pruned_after_finetune"}
    assert all(0.0 <= metrics[key]["accuracy"] <= 1.0 for key in metrics)
    assert not [path.name for path in result.out_dir.parent.iterdir() if ".partial-" in path.name]


def test_pruned_checkpoint_compiles_and_onnx_keeps_the_zeros(pruned_2_4, compile_once):
    import onnx
    from onnx import numpy_helper

    result, _ = pruned_2_4
    saved = load_file(str(result.out_dir / "model.safetensors"))
    fp32 = compile_once(result.out_dir, "onnx", quantization="none")
    graph = onnx.load(str(fp32.artifact_dir / "model.fp32.onnx"))
    matrices = [numpy_helper.to_array(init) for init in graph.graph.initializer]
    for name in result.matrix_sparsity:
        weight = saved[name].numpy()
        assert any(
            matrix.shape == weight.T.shape and np.array_equal(matrix, weight.T)
            for matrix in matrices
        ), f"{name} is not in the fp32 ONNX graph with its zeros"
    dynamic = compile_once(result.out_dir, "onnx", quantization="dynamic")
    assert (dynamic.artifact_dir / "model.int8-dynamic.onnx").is_file()
    assert dynamic.manifest["model"]["labels"] == {0: "negative", 1: "positive"}


def test_same_seed_gives_identical_weights(pruned_2_4, tmp_path, tiny_classifier, glue_data_dir):
    result, _ = pruned_2_4
    again = prune_model(str(tiny_classifier), tmp_path / "again", tiny_options(glue_data_dir))
    first = load_file(str(result.out_dir / "model.safetensors"))
    second = load_file(str(again.out_dir / "model.safetensors"))
    assert sorted(first) == sorted(second)
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert again.dev_metrics == result.dev_metrics


def test_bare_encoder_gets_a_fresh_head_and_no_dense_score(tmp_path, tiny_encoder, glue_data_dir):
    result = prune_model(
        str(tiny_encoder), tmp_path / "out", tiny_options(glue_data_dir, max_steps=2)
    )
    assert result.dev_metrics["dense"] is None
    assert any("freshly initialised" in note for note in result.notes)
    saved = load_file(str(result.out_dir / "model.safetensors"))
    assert saved["classifier.weight"].shape == (2, 32)


@pytest.mark.parametrize(
    "pattern", ["3:3", "0:4", "2-4", "unstructured:1.5", "unstructured:0.8.1", "block:1x1", "dense"]
)
def test_unknown_pattern_is_a_usage_error(pattern, tmp_path, tiny_classifier, glue_data_dir):
    with pytest.raises(UsageError, match="sparsity pattern"):
        prune_model(
            str(tiny_classifier), tmp_path / "out", tiny_options(glue_data_dir, pattern=pattern)
        )
    assert not (tmp_path / "out").exists()


def test_head_that_does_not_fit_the_task_is_a_usage_error(tmp_path, glue_data_dir):
    regression = make_checkpoint(tmp_path / "stsb", head="regression")
    with pytest.raises(UsageError, match="1-output regression head but sst2 needs 2"):
        prune_model(str(regression), tmp_path / "out", tiny_options(glue_data_dir))


def test_classifier_on_a_regression_task_is_a_usage_error(tmp_path, tiny_classifier, glue_data_dir):
    with pytest.raises(UsageError, match="stsb needs 1"):
        prune_model(
            str(tiny_classifier), tmp_path / "out", tiny_options(glue_data_dir, task="stsb")
        )


def test_existing_output_is_refused(tmp_path, tiny_classifier, glue_data_dir):
    (tmp_path / "out").mkdir()
    with pytest.raises(OutputExistsError):
        prune_model(str(tiny_classifier), tmp_path / "out", tiny_options(glue_data_dir))


def test_regression_head_prunes_and_scores_with_correlations(tmp_path, glue_data_dir):
    regression = make_checkpoint(tmp_path / "stsb", head="regression")
    result = prune_model(
        str(regression),
        tmp_path / "out",
        tiny_options(glue_data_dir, task="stsb", pattern="1:2", max_steps=2),
    )
    assert set(result.dev_metrics["pruned_after_finetune"]) == {"pearson", "spearman"}
    assert set(result.matrix_sparsity.values()) == {0.5}


def test_pickle_only_checkpoint_needs_the_opt_in(tmp_path, glue_data_dir):
    from bertc.compiler.core.errors import UnsafeCheckpointError

    pickled = make_checkpoint(tmp_path / "pickled", safetensors=False)
    with pytest.raises(UnsafeCheckpointError, match="--allow-pickle"):
        prune_model(str(pickled), tmp_path / "out", tiny_options(glue_data_dir))


def test_cli_prune_refuses_a_bad_pattern_and_an_existing_out(
    bertc_cli, tiny_classifier: Path, glue_data_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "pruned"
    bad = bertc_cli(
        "prune",
        tiny_classifier,
        "--pattern",
        "3:2",
        "--task",
        "sst2",
        "--out",
        out,
        "--data-dir",
        glue_data_dir,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("error: unknown sparsity pattern '3:2'")
    assert len(bad.stderr.strip().splitlines()) == 1
    assert not out.exists()
    out.mkdir()
    exists = bertc_cli(
        "prune",
        tiny_classifier,
        "--pattern",
        "2:4",
        "--task",
        "sst2",
        "--out",
        out,
        "--data-dir",
        glue_data_dir,
        "--max-steps",
        "1",
    )
    assert exists.returncode == 13, exists.stderr
