"""`distill_model`: the loss, the layer map, a student pulled toward its teacher, TinyBERT's
projections where widths differ (trained, checkpointed, not saved), resume, refusals."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from bertc.calibration import get_task, load_examples
from bertc.compiler.core.errors import UsageError
from bertc.compiler.training import loop as training
from bertc.compiler.training.distill import DistillOptions, distill_model, layer_map, soft_loss
from bertc.compiler.training.finetune import checkpoint_dir_for
from model_factory import make_checkpoint
from safetensors.torch import load_file

STUDENT_WIDTH = 48  # the tiny teacher is 32 wide: hidden matching needs a fit_dense


def options(glue_data_dir: Path, **overrides) -> DistillOptions:
    settings = dict(
        task="sst2",
        data_dir=glue_data_dir,
        batch_size=8,
        learning_rate=3e-3,
        epochs=15,
        keep_layers=1,
        alpha=1.0,
        temperature=2.0,
        hidden_weight=1.0,
        attention_weight=1.0,
        threads=1,
        log_every=5,
    )
    return DistillOptions(**{**settings, **overrides})


@pytest.fixture(scope="module")
def wide_student(tmp_path_factory) -> Path:
    """A 2-layer, 48-wide encoder with the tiny teacher's vocabulary."""
    return make_checkpoint(
        tmp_path_factory.mktemp("student"),
        head="encoder",
        config_overrides={"hidden_size": STUDENT_WIDTH, "intermediate_size": 96},
        seed=1,
    )


def dev_logits(checkpoint: Path, glue_data_dir: Path) -> torch.Tensor:
    task = get_task("sst2")
    model, tokenizer, *_ = training.load_classifier(str(checkpoint), task)
    data = training.tokenize(tokenizer, task, load_examples(task, "dev", glue_data_dir), 64)
    return torch.from_numpy(training.predict_logits(model, training.Batcher(tokenizer, data)))


def kl_to_teacher(teacher: torch.Tensor, student: torch.Tensor) -> float:
    return float(soft_loss(student, teacher, temperature=1.0))


def test_soft_loss_is_zero_at_the_teacher_and_scaled_by_t_squared():
    teacher = torch.tensor([[2.0, -1.0], [0.5, 0.3]])
    student = torch.tensor([[0.0, 0.0], [1.0, -1.0]])
    assert float(soft_loss(teacher, teacher, 3.0)) == pytest.approx(0.0, abs=1e-6)
    p = torch.softmax(teacher / 2.0, -1)
    q = torch.log_softmax(student / 2.0, -1)
    expected = float((p * (p.log() - q)).sum(-1).mean() * 4.0)
    assert float(soft_loss(student, teacher, 2.0)) == pytest.approx(expected, rel=1e-6)
    scores = torch.tensor([[1.0], [3.0]])
    assert float(soft_loss(scores, scores + 2.0, 5.0)) == pytest.approx(4.0)  # regression: MSE


def test_uniform_layer_map():
    assert layer_map(3, 6) == [2, 4, 6]
    assert layer_map(4, 12) == [3, 6, 9, 12]
    assert layer_map(2, 2) == [1, 2]
    with pytest.raises(UsageError):
        layer_map(4, 6)


@pytest.fixture(scope="module")
def distilled(tmp_path_factory, tiny_classifier: Path, wide_student: Path, glue_data_dir: Path):
    root = tmp_path_factory.mktemp("distill")
    start = distill_model(
        str(tiny_classifier),
        str(wide_student),
        root / "start",
        options(glue_data_dir, learning_rate=1e-12, max_steps=1),
    )
    trained = distill_model(
        str(tiny_classifier),
        str(wide_student),
        root / "student",
        options(glue_data_dir, compare_alone=True),
    )
    return start, trained


def test_distillation_pulls_the_student_toward_the_teacher(
    distilled, tiny_classifier, glue_data_dir
):
    start, trained = distilled
    teacher = dev_logits(tiny_classifier, glue_data_dir)
    before = kl_to_teacher(teacher, dev_logits(start.out_dir, glue_data_dir))
    after = kl_to_teacher(teacher, dev_logits(trained.out_dir, glue_data_dir))
    assert after < 0.1 * before, (before, after)
    agreement = (
        (dev_logits(trained.out_dir, glue_data_dir).argmax(-1) == teacher.argmax(-1)).float().mean()
    )
    assert agreement >= 0.9
    assert trained.report["training"]["last_loss"] < trained.report["training"]["first_loss"]


def test_report_and_saved_student(distilled, tiny_classifier):
    _, trained = distilled
    report = json.loads((trained.out_dir / "distill.json").read_text(encoding="utf-8"))
    assert report["distillation"]["layer_map"] == [2]  # 1 student layer <- teacher layer 2
    assert report["distillation"]["projections"] == 2  # embeddings and the one layer: 48 -> 32
    assert report["distillation"]["teacher_logits_cached"] is False
    assert report["teacher"]["dev_metrics"] == dict(trained.teacher_dev_metrics)
    assert report["alone"]["steps"] == trained.steps == 75
    assert set(report["alone"]["dev_metrics"]) == {"accuracy"}
    config = json.loads((trained.out_dir / "config.json").read_text(encoding="utf-8"))
    assert (config["num_hidden_layers"], config["hidden_size"]) == (1, STUDENT_WIDTH)
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    saved = load_file(str(trained.out_dir / "model.safetensors"))
    # The projections are distillation-only: the student checkpoint is a plain BERT classifier.
    assert all(name.startswith(("bert.", "classifier.")) for name in saved)
    assert saved["classifier.weight"].shape == (2, STUDENT_WIDTH)
    assert not checkpoint_dir_for(trained.out_dir).exists()


def test_logits_only_distillation_caches_the_teacher(
    tmp_path, tiny_classifier, wide_student, glue_data_dir
):
    result = distill_model(
        str(tiny_classifier),
        str(wide_student),
        tmp_path / "kd",
        options(glue_data_dir, hidden_weight=0.0, attention_weight=0.0, alpha=0.5, max_steps=10),
    )
    assert result.report["distillation"]["teacher_logits_cached"] is True
    assert result.report["distillation"]["projections"] == 0


class Interrupted(Exception):
    pass


def test_resume_restores_the_projections_too(
    tmp_path, tiny_classifier, wide_student, glue_data_dir
):
    settings = options(glue_data_dir, epochs=2)
    whole = distill_model(str(tiny_classifier), str(wide_student), tmp_path / "whole", settings)

    def stop(message: str) -> None:
        if message.startswith("checkpoint epoch 1 "):
            raise Interrupted

    out = tmp_path / "resumed"
    with pytest.raises(Interrupted):
        distill_model(str(tiny_classifier), str(wide_student), out, settings, stop)
    state = torch.load(checkpoint_dir_for(out) / "epoch-1" / "training_state.pt", weights_only=True)
    assert any(name.startswith("projections.") for name in state["model"])
    resumed = distill_model(
        str(tiny_classifier), str(wide_student), out, replace(settings, resume=True)
    )
    first = load_file(str(whole.out_dir / "model.safetensors"))
    second = load_file(str(resumed.out_dir / "model.safetensors"))
    assert all(torch.equal(first[name], second[name]) for name in first)


def test_distilled_student_compiles(distilled, compile_once):
    _, trained = distilled
    artifact = compile_once(trained.out_dir, "onnx", quantization="none")
    assert artifact.manifest["model"]["labels"] == {0: "negative", 1: "positive"}


def test_refusals(tmp_path, tiny_classifier, tiny_encoder, wide_student, glue_data_dir):
    with pytest.raises(UsageError, match="no sst2 head"):
        distill_model(str(tiny_encoder), str(wide_student), tmp_path / "a", options(glue_data_dir))
    other_vocab = make_checkpoint(
        tmp_path / "other", head="encoder", config_overrides={"vocab_size": 400}
    )
    with pytest.raises(UsageError, match="vocabularies"):
        distill_model(
            str(tiny_classifier), str(other_vocab), tmp_path / "b", options(glue_data_dir)
        )
    for bad in (dict(alpha=1.5), dict(temperature=0.0), dict(hidden_weight=-1.0)):
        with pytest.raises(UsageError):
            distill_model(
                str(tiny_classifier),
                str(wide_student),
                tmp_path / "c",
                options(glue_data_dir, **bad),
            )
    assert not any(
        path.name.startswith((".a", ".b", ".c", "a", "b", "c")) for path in tmp_path.iterdir()
    )


# ---- real weights (slow: a few real steps on two shared cores)


def _assets() -> Path:
    default = Path(__file__).resolve().parents[3] / ".." / "shared" / "assets"
    return Path(os.environ.get("BERTC_ASSETS", default)).resolve()


@pytest.mark.slow
def test_real_minilm_teacher_into_a_3_layer_student(tmp_path):
    """minilm-l6-sst2 into all-MiniLM-L6-v2's layers 0, 2, 4 for a few steps: the pipeline
    holds on the real shapes (logits cached, 3 layers saved, teacher scored on dev)."""
    assets = _assets()
    teacher, student = assets / "models" / "minilm-l6-sst2", assets / "models" / "all-MiniLM-L6-v2"
    glue = assets / "glue"
    if not all(path.is_dir() for path in (teacher, student, glue / "SST-2")):
        pytest.skip(f"minilm-l6-sst2, all-MiniLM-L6-v2 or GLUE SST-2 not under {assets}")
    result = distill_model(
        str(teacher),
        str(student),
        tmp_path / "student",
        DistillOptions(
            task="sst2", data_dir=glue, keep_layers=3, max_steps=4, train_samples=128, threads=1
        ),
    )
    assert result.teacher_dev_metrics["accuracy"] == pytest.approx(0.8704, abs=1e-4)
    config = json.loads((result.out_dir / "config.json").read_text(encoding="utf-8"))
    assert config["num_hidden_layers"] == 3
    assert result.report["training"]["kept_layers"] == [0, 2, 4]
    assert result.report["distillation"]["teacher_logits_cached"] is True
