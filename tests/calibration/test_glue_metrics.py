"""GLUE metrics checked against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from bertc.calibration import compute_metrics, get_task, predictions_from_logits
from bertc.compiler.core.errors import EmptySplitError


def test_accuracy_single_sentence() -> None:
    # 3 of 5 agree (positions 0, 1, 3).
    result = compute_metrics(get_task("sst2"), [1, 0, 1, 1, 0], [1, 0, 0, 1, 1])
    assert result == {"accuracy": pytest.approx(0.6)}


def test_pair_f1_and_accuracy() -> None:
    predictions = [1, 1, 1, 0, 0, 1, 0, 0]
    references = [1, 1, 0, 1, 0, 1, 0, 1]
    # TP = 3 (0, 1, 5), FP = 1 (2), FN = 2 (3, 7), TN = 2 (4, 6)
    # precision 3/4, recall 3/5, F1 = 2TP / (2TP + FP + FN) = 6/9; accuracy = 5/8
    result = compute_metrics(get_task("mrpc"), predictions, references)
    assert list(result) == ["f1", "accuracy"]
    assert result["f1"] == pytest.approx(2 / 3)
    assert result["accuracy"] == pytest.approx(5 / 8)
    assert compute_metrics(get_task("qqp"), predictions, references) == result


def test_matthews_correlation() -> None:
    predictions = [1, 1, 1, 1, 1, 0, 0, 0, 0, 0]
    references = [1, 1, 1, 1, 0, 0, 0, 0, 0, 1]
    # TP = 4, FP = 1, TN = 4, FN = 1
    # MCC = (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (16 - 1) / sqrt(5^4) = 15/25
    result = compute_metrics(get_task("cola"), predictions, references)
    assert result == {"matthews_corr": pytest.approx(0.6)}


def test_matthews_correlation_of_a_constant_predictor_is_zero() -> None:
    result = compute_metrics(get_task("cola"), [1, 1, 1, 1], [1, 0, 1, 0])
    assert result["matthews_corr"] == 0.0


def test_pearson_and_spearman_on_monotone_non_linear_data() -> None:
    # x = 1..4, y = x^2: dx = (-1.5, -.5, .5, 1.5), dy = (-6.5, -3.5, 1.5, 8.5)
    # sum dx*dy = 25, sum dx^2 = 5, sum dy^2 = 129 -> pearson = 25 / sqrt(645); ranks agree -> 1
    result = compute_metrics(get_task("stsb"), [1.0, 2.0, 3.0, 4.0], [1.0, 4.0, 9.0, 16.0])
    assert list(result) == ["pearson", "spearman"]
    assert result["pearson"] == pytest.approx(25 / math.sqrt(645))
    assert result["pearson"] < 1.0
    assert result["spearman"] == pytest.approx(1.0)


def test_spearman_from_rank_differences() -> None:
    # rank differences d = (-1, 1, -1, 1): rho = 1 - 6 * sum d^2 / (n (n^2 - 1)) = 1 - 24/60
    result = compute_metrics(get_task("stsb"), [1.0, 2.0, 3.0, 4.0], [2.0, 1.0, 4.0, 3.0])
    assert result["spearman"] == pytest.approx(0.6)
    # pearson here equals spearman: the values are their own ranks
    assert result["pearson"] == pytest.approx(0.6)


def test_correlation_of_constant_predictions_is_nan() -> None:
    result = compute_metrics(get_task("stsb"), [2.0, 2.0, 2.0], [1.0, 2.0, 3.0])
    assert math.isnan(result["pearson"]) and math.isnan(result["spearman"])


def test_values_are_plain_floats_on_a_unit_scale() -> None:
    result = compute_metrics(get_task("mrpc"), np.array([1, 0, 1]), np.array([1, 0, 1]))
    assert result == {"f1": 1.0, "accuracy": 1.0}
    assert all(type(value) is float for value in result.values())


def test_empty_input_is_an_empty_split() -> None:
    with pytest.raises(EmptySplitError):
        compute_metrics(get_task("sst2"), [], [])


def test_length_mismatch_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="3 predictions but 2 references"):
        compute_metrics(get_task("sst2"), [1, 0, 1], [1, 0])


def test_unlabelled_references_are_refused() -> None:
    with pytest.raises(ValueError, match="unlabelled"):
        compute_metrics(get_task("sst2"), [1, 0], [1, None])


def test_predictions_from_logits_argmax() -> None:
    logits = np.array([[0.1, 2.0, -1.0], [3.0, 0.0, 0.5], [0.0, 0.1, 0.2]])
    assert predictions_from_logits(get_task("mnli"), logits).tolist() == [1, 0, 2]


def test_predictions_from_logits_regression_squeezes() -> None:
    logits = np.array([[4.5], [0.25]], dtype=np.float32)
    predictions = predictions_from_logits(get_task("stsb"), logits)
    assert predictions.shape == (2,)
    assert predictions.tolist() == [4.5, 0.25]


def test_predictions_from_logits_rejects_the_wrong_head_width() -> None:
    with pytest.raises(ValueError, match=r"\(batch, 2\)"):
        predictions_from_logits(get_task("sst2"), np.zeros((4, 3)))
