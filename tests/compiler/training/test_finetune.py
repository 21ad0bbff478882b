"""`finetune_model` and `run_grid`: it learns, it saves what compile needs, it is deterministic,
resume equals the uninterrupted run, the grid picks the same winner in-process and on Ray,
bad input is one line with its exit code."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from bertc.compiler.core.errors import OutputExistsError, UsageError
from bertc.compiler.training.finetune import (
    FinetuneOptions,
    checkpoint_dir_for,
    finetune_model,
)
from bertc.compiler.training.grid import (
    Engine,
    GridOptions,
    Trial,
    TrialResult,
    grid_trials,
    pick_winner,
    run_grid,
)
from bertc.compiler.training.loop import training_order
from model_factory import make_checkpoint
from safetensors.torch import load_file

# The tiny encoder learns the 40 tiny SST-2 rows (train = dev) in 75 steps at this rate.
LEARNABLE = dict(task="sst2", batch_size=8, learning_rate=3e-3, epochs=15, log_every=5, threads=1)


def options(glue_data_dir: Path, **overrides) -> FinetuneOptions:
    return FinetuneOptions(data_dir=glue_data_dir, **{**LEARNABLE, **overrides})


def weights(directory: Path) -> dict[str, torch.Tensor]:
    return load_file(str(directory / "model.safetensors"))


def assert_same_weights(first: Path, second: Path) -> None:
    a, b = weights(first), weights(second)
    assert sorted(a) == sorted(b)
    different = [name for name in a if not torch.equal(a[name], b[name])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory, tiny_encoder: Path, glue_data_dir: Path):
    out = tmp_path_factory.mktemp("finetune") / "sst2"
    messages: list[str] = []
    return finetune_model(str(tiny_encoder), out, options(glue_data_dir), messages.append), messages


def test_fine_tuning_learns_the_task_and_the_loss_falls(
    finetuned, tmp_path, tiny_encoder, glue_data_dir
):
    result, messages = finetuned
    training = result.report["training"]
    assert result.steps == 75 and training["epochs"] == 15.0
    assert training["last_loss"] < 0.5 * training["first_loss"]
    assert result.dev_metrics["accuracy"] >= 0.9  # 40 balanced rows: chance is 0.5
    assert any(message.startswith("checkpoint epoch 1 ") for message in messages)
    # The same start and budget with a learning rate too small to move: stays near chance.
    slow = finetune_model(
        str(tiny_encoder),
        tmp_path / "slow",
        options(glue_data_dir, learning_rate=1e-6),
    )
    assert slow.dev_metrics["accuracy"] <= 0.7


def test_output_is_a_checkpoint_with_labels_metrics_and_no_leftovers(finetuned):
    result, _ = finetuned
    out = result.out_dir
    assert {"model.safetensors", "config.json", "tokenizer.json", "finetune.json"} <= {
        path.name for path in out.iterdir()
    }
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert config["finetuning_task"] == "sst2"
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    assert config["label2id"] == {"negative": 0, "positive": 1}
    report = json.loads((out / "finetune.json").read_text(encoding="utf-8"))
    assert report["dev_metrics"] == dict(result.dev_metrics)
    assert report["headline_metric"] == "accuracy"
    assert report["training"]["batch_size"] == 8 and report["training"]["seed"] == 0
    # Epoch checkpoints are removed after a successful run; nothing half-written remains.
    assert not checkpoint_dir_for(out).exists()
    assert [path.name for path in out.parent.iterdir()] == [out.name]


def test_same_seed_gives_identical_weights_and_another_seed_does_not(
    finetuned, tmp_path, tiny_encoder, glue_data_dir
):
    result, _ = finetuned
    again = finetune_model(str(tiny_encoder), tmp_path / "again", options(glue_data_dir))
    assert_same_weights(result.out_dir, again.out_dir)
    assert again.dev_metrics == result.dev_metrics
    other = finetune_model(
        str(tiny_encoder), tmp_path / "other", options(glue_data_dir, max_steps=5, seed=1)
    )
    first = weights(result.out_dir)
    assert not torch.equal(weights(other.out_dir)["classifier.weight"], first["classifier.weight"])


class Interrupted(Exception):
    pass


def test_resume_after_an_interruption_equals_the_uninterrupted_run(
    tmp_path, tiny_encoder, glue_data_dir
):
    settings = options(glue_data_dir, epochs=3)
    whole = finetune_model(str(tiny_encoder), tmp_path / "whole", settings)
    out = tmp_path / "interrupted"

    def stop_after_epoch_2(message: str) -> None:
        if message.startswith("checkpoint epoch 2 "):
            raise Interrupted

    with pytest.raises(Interrupted):
        finetune_model(str(tiny_encoder), out, settings, stop_after_epoch_2)
    assert not out.exists()
    assert sorted(path.name for path in checkpoint_dir_for(out).iterdir()) == [
        "epoch-1",
        "epoch-2",
    ]
    messages: list[str] = []
    resumed = finetune_model(
        str(tiny_encoder), out, replace(settings, resume=True), messages.append
    )
    assert "resumed at step 10/15" in messages
    assert resumed.report["training"]["resumed_from_step"] == 10
    assert_same_weights(whole.out_dir, resumed.out_dir)
    assert resumed.dev_metrics == whole.dev_metrics
    # A checkpoint of other settings is refused rather than silently mixed in.
    with pytest.raises(Interrupted):
        finetune_model(str(tiny_encoder), tmp_path / "again", settings, stop_after_epoch_2)
    with pytest.raises(UsageError, match="other settings"):
        finetune_model(
            str(tiny_encoder),
            tmp_path / "again",
            replace(settings, resume=True, learning_rate=1e-3),
        )


def test_regression_task_saves_a_one_output_head_with_correlations(
    tmp_path, tiny_encoder, glue_data_dir
):
    result = finetune_model(
        str(tiny_encoder), tmp_path / "stsb", options(glue_data_dir, task="stsb", max_steps=5)
    )
    config = json.loads((result.out_dir / "config.json").read_text(encoding="utf-8"))
    assert config["id2label"] == {"0": "score"} and config["problem_type"] == "regression"
    assert set(result.dev_metrics) == {"pearson", "spearman"}
    assert result.headline_metric == "pearson"


def test_keep_layers_keeps_evenly_spaced_layers_of_the_checkpoint(tmp_path, glue_data_dir):
    source = make_checkpoint(
        tmp_path / "four", head="encoder", config_overrides={"num_hidden_layers": 4}
    )
    result = finetune_model(
        str(source),
        tmp_path / "two",
        options(glue_data_dir, keep_layers=2, learning_rate=1e-12, max_steps=1),
    )
    config = json.loads((result.out_dir / "config.json").read_text(encoding="utf-8"))
    assert config["num_hidden_layers"] == 2
    assert result.report["training"]["kept_layers"] == [0, 2]
    saved, original = weights(result.out_dir), weights(source)
    name = "encoder.layer.{}.attention.self.query.weight"
    # lr 1e-12: the weights are still the source's; new layer 1 is old layer 2.
    assert torch.allclose(saved["bert." + name.format(1)], original[name.format(2)], atol=1e-6)
    assert not any(key.startswith("bert.encoder.layer.2.") for key in saved)


def test_fine_tuned_checkpoint_compiles_with_its_labels(finetuned, compile_once):
    result, _ = finetuned
    artifact = compile_once(result.out_dir, "onnx", quantization="none")
    assert artifact.manifest["model"]["labels"] == {0: "negative", 1: "positive"}
    assert artifact.manifest["model"]["head"] == "classifier"


def test_training_order_is_a_seeded_shuffle_per_epoch():
    batches = training_order(10, steps=6, batch_size=4, seed=3)
    assert [len(batch) for batch in batches] == [4, 4, 2, 4, 4, 2]
    assert sorted(sum(batches[:3], [])) == list(range(10))
    assert batches[:3] != batches[3:]
    assert batches == training_order(10, steps=6, batch_size=4, seed=3)


# ---- the grid ----


def test_seed_grid_is_the_miniatures_grid_in_order():
    trials = grid_trials(GridOptions())
    assert len(trials) == 20
    assert (trials[0].batch_size, trials[0].learning_rate) == (8, 3e-4)
    assert (trials[-1].batch_size, trials[-1].learning_rate) == (128, 3e-5)
    assert len(grid_trials(GridOptions(max_trials=3))) == 3
    with pytest.raises(UsageError):
        grid_trials(GridOptions(grid="nope"))


def test_winner_is_the_best_metric_then_the_earlier_trial():
    def result(index, value, error=None):
        return TrialResult(Trial(index, 8, 1e-4), {"f1": value}, 1, 0.0, error)

    results = [result(0, 0.5), result(1, 0.7), result(2, 0.7), result(3, 0.9, error="boom")]
    assert pick_winner(results, "f1").trial.index == 1
    assert pick_winner([result(0, float("nan")), result(1, 0.1)], "f1").trial.index == 1


def test_grid_in_process_and_on_ray_run_the_same_trials_and_pick_the_same_winner(
    tmp_path, tiny_encoder, glue_data_dir
):
    pytest.importorskip("ray.tune", reason="Ray Tune is not installed (pip install 'bertc[ray]')")
    # STS-B's Pearson is continuous, so the four trials score differently (no tie decides).
    settings = options(glue_data_dir, task="stsb", max_steps=6)
    grid = GridOptions(batch_sizes=(8, 16), learning_rates=(3e-3, 1e-4), ray_cpus=2)
    local = run_grid(str(tiny_encoder), tmp_path / "local", settings, grid)
    on_ray = run_grid(
        str(tiny_encoder), tmp_path / "ray", settings, replace(grid, engine=Engine.RAY)
    )
    assert [r.trial for r in local.trials] == [r.trial for r in on_ray.trials]
    assert len({r.dev_metrics["pearson"] for r in local.trials}) == 4
    for mine, theirs in zip(local.trials, on_ray.trials, strict=True):
        assert mine.dev_metrics == pytest.approx(theirs.dev_metrics, abs=1e-6)
    assert local.winner.trial == on_ray.winner.trial
    best = max(local.trials, key=lambda r: r.dev_metrics["pearson"])
    assert local.winner.trial == best.trial
    for result in (local, on_ray):
        report = json.loads((result.out_dir / "grid.json").read_text(encoding="utf-8"))
        assert report["engine"] == result.engine.value and len(report["trials"]) == 4
        assert report["winner"] == best.trial.index
        assert "**best**" in (result.out_dir / "grid.md").read_text(encoding="utf-8")
        saved = json.loads((result.out_dir / "finetune.json").read_text(encoding="utf-8"))
        assert saved["training"]["batch_size"] == best.trial.batch_size
    assert_same_weights(local.out_dir, on_ray.out_dir)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["local", "ray"]


# ---- errors ----


def test_existing_output_and_bad_values_are_refused_before_training(
    tmp_path, tiny_encoder, glue_data_dir
):
    (tmp_path / "taken").mkdir()
    with pytest.raises(OutputExistsError):
        finetune_model(str(tiny_encoder), tmp_path / "taken", options(glue_data_dir))
    for bad in (
        dict(batch_size=0),
        dict(learning_rate=-1.0),
        dict(max_steps=0),
        dict(task="nope"),
        dict(keep_layers=9),
    ):
        with pytest.raises(UsageError):
            finetune_model(str(tiny_encoder), tmp_path / "out", options(glue_data_dir, **bad))
    with pytest.raises(UsageError, match="no checkpoint"):
        finetune_model(str(tiny_encoder), tmp_path / "out", options(glue_data_dir, resume=True))


def test_cli_fine_tunes_and_errors_are_one_line(bertc_cli, tmp_path, tiny_encoder, glue_data_dir):
    out = tmp_path / "cli"
    done = bertc_cli(
        "finetune",
        tiny_encoder,
        "--task",
        "sst2",
        "--data-dir",
        glue_data_dir,
        "--out",
        out,
        "--max-steps",
        "3",
        "--batch-size",
        "8",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["training"]["steps"] == 3
    assert (out / "model.safetensors").is_file()
    cases = {13: ("--out", out), 2: ("--out", tmp_path / "x", "--engine", "ray")}
    for code, extra in cases.items():
        failed = bertc_cli(
            "finetune", tiny_encoder, "--task", "sst2", "--data-dir", glue_data_dir, *extra
        )
        assert failed.returncode == code, (extra, failed.stderr)
        assert len(failed.stderr.strip().splitlines()) == 1, failed.stderr
        assert failed.stderr.startswith("error: ") and "Traceback" not in failed.stderr
