"""The GLUE task table and name lookup."""

from __future__ import annotations

import pytest
from bertc.calibration import METRICS, TASKS, get_task
from bertc.compiler.core.errors import UsageError

CANONICAL = ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "mnli-mm", "qnli", "rte", "wnli")


def test_table_has_one_row_per_task_keyed_by_its_name() -> None:
    assert sorted(TASKS) == sorted(CANONICAL)
    assert all(task.name == name for name, task in TASKS.items())


@pytest.mark.parametrize("task", TASKS.values(), ids=lambda t: t.name)
def test_every_row_is_consistent(task) -> None:
    assert task.headline_metric in task.metrics
    assert set(task.metrics) <= set(METRICS)
    assert {"train", "dev"} <= set(task.split_files)
    assert len(task.text_columns) == len(task.hf.text_columns) in (1, 2)
    if task.labels is not None:
        assert task.hf.label_names is not None
        assert len(task.hf.label_names) == len(task.labels) == task.num_labels


@pytest.mark.parametrize(
    ("name", "headline"),
    [
        ("cola", "matthews_corr"),
        ("sst2", "accuracy"),
        ("mrpc", "f1"),
        ("qqp", "f1"),
        ("stsb", "pearson"),
        ("mnli", "accuracy"),
        ("qnli", "accuracy"),
        ("rte", "accuracy"),
        ("wnli", "accuracy"),
    ],
)
def test_headline_metric_is_the_glue_standard(name: str, headline: str) -> None:
    assert get_task(name).headline_metric == headline


def test_tasks_are_hashable_values() -> None:
    assert len({*TASKS.values(), get_task("SST-2")}) == len(TASKS)
    assert get_task("sst-2") == get_task("sst2")


def test_properties() -> None:
    assert get_task("stsb").is_regression and get_task("stsb").num_labels == 1
    assert not get_task("cola").is_regression and get_task("cola").num_labels == 2
    assert get_task("mnli").num_labels == 3
    assert not get_task("sst2").is_pair and not get_task("cola").is_pair
    assert get_task("mrpc").is_pair and get_task("qnli").is_pair


def test_label_orders_follow_bert_fine_tuning_scripts() -> None:
    assert get_task("mnli").labels == ("contradiction", "entailment", "neutral")
    assert get_task("rte").labels == ("entailment", "not_entailment")
    assert get_task("sst2").labels == ("0", "1")
    assert get_task("stsb").labels is None


def test_mnli_matched_and_mismatched_differ_only_in_dev_split() -> None:
    matched, mismatched = get_task("mnli"), get_task("mnli-mm")
    assert matched.folder == mismatched.folder == "MNLI"
    assert matched.split_files["dev"] == "dev_matched.tsv"
    assert mismatched.split_files["dev"] == "dev_mismatched.tsv"
    assert matched.split_files["train"] == mismatched.split_files["train"] == "train.tsv"
    assert matched.hf.splits["dev"] == "validation_matched"
    assert mismatched.hf.splits["dev"] == "validation_mismatched"


@pytest.mark.parametrize(
    ("alias", "name"),
    [
        ("SST-2", "sst2"),
        ("sst-2", "sst2"),
        ("sst2", "sst2"),
        ("STS-B", "stsb"),
        ("sts_b", "stsb"),
        ("CoLA", "cola"),
        ("MNLI", "mnli"),
        ("mnli_matched", "mnli"),
        ("mnli_mismatched", "mnli-mm"),
        ("MNLI-MM", "mnli-mm"),
        ("  QQP ", "qqp"),
    ],
)
def test_aliases_resolve_case_insensitively(alias: str, name: str) -> None:
    assert get_task(alias).name == name


def test_unknown_task_lists_the_known_names() -> None:
    with pytest.raises(UsageError) as caught:
        get_task("squad")
    message = str(caught.value)
    assert "'squad'" in message
    assert all(name in message for name in CANONICAL)
    assert caught.value.exit_code == 2


def test_resolve_task_prefers_the_request_then_a_glue_config_task() -> None:
    from bertc.calibration import get_task, resolve_task

    assert resolve_task("SST-2", "mrpc") is get_task("sst2")
    assert resolve_task(None, "sst-2") is get_task("sst2")
    assert resolve_task(None, "ner") is None  # a fine-tuning task outside GLUE
    assert resolve_task(None, None) is None
    with pytest.raises(UsageError):
        resolve_task("not-a-task", "sst2")


def test_recorded_task_reads_the_manifest_then_the_older_fields() -> None:
    from bertc.calibration.tasks import recorded_task

    assert recorded_task({"task": "sst2", "calibration": {"task": "mrpc"}}) == "sst2"
    assert recorded_task({"task": None, "calibration": {"task": "mrpc"}}) is None
    older = {"calibration": {"task": "SST-2"}, "model": {"config": {}}}
    assert recorded_task(older) == "sst2"
    outside_glue = {"calibration": None, "model": {"config": {"finetuning_task": "ner"}}}
    assert recorded_task(outside_glue) is None
