"""Probability metrics against scikit-learn, and the calibration fit on synthetic logits."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, f1_score, roc_auc_score

from reasonguard.calibration import Calibration, find_calibration, fit_temperature, load_calibration, save_calibration, scale, sigmoid
from reasonguard.score_metrics import (
    average_precision,
    best_f1_threshold,
    brier_score,
    expected_calibration_error,
    f1_at,
    reliability_bins,
    roc_auc,
    score_summary,
)


def _data(seed: int, n: int = 300, ties: bool = False):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = np.clip(0.35 * y + rng.random(n) * 0.65, 0, 1)
    if ties:
        s = np.round(s, 1)
    return s.tolist(), y.tolist()


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("ties", [False, True])
def test_ranking_metrics_match_sklearn(seed, ties):
    s, y = _data(seed, ties=ties)
    assert roc_auc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert average_precision(s, y) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert brier_score(s, y) == pytest.approx(brier_score_loss(y, s), abs=1e-12)


def test_f1_at_threshold_matches_sklearn():
    s, y = _data(3)
    for t in (0.2, 0.5, 0.8):
        assert f1_at(s, y, t) == pytest.approx(f1_score(y, [int(v >= t) for v in s], zero_division=0))


def test_ece_by_hand():
    # bin [0.1,0.2): two scores 0.1 and 0.15, one positive -> |0.125 - 0.5| * 2/4
    # bin [0.9,1.0]: scores 0.9, 1.0, both positive -> |0.95 - 1| * 2/4
    s, y = [0.1, 0.15, 0.9, 1.0], [1, 0, 1, 1]
    assert expected_calibration_error(s, y) == pytest.approx(0.375 * 0.5 + 0.05 * 0.5)
    bins = reliability_bins(s, y)
    assert [b.count for b in bins] == [0, 2, 0, 0, 0, 0, 0, 0, 0, 2]


def test_undefined_metrics_are_nan_not_errors():
    summary = score_summary([0.2, 0.7], [1, 1])
    assert math.isnan(summary["auroc"]) and math.isnan(summary["auprc"]) and summary["n_scored"] == 2
    assert math.isnan(score_summary([], [])["brier"])
    with pytest.raises(ValueError):
        roc_auc([1.5], [1])


def test_best_threshold_beats_a_bad_one():
    s, y = _data(4)
    t = best_f1_threshold(s, y)
    assert f1_at(s, y, t) >= max(f1_at(s, y, 0.99), f1_at(s, y, 0.01))


@pytest.mark.parametrize("true_t", [0.5, 2.0, 4.0])
def test_temperature_fit_recovers_a_known_temperature(true_t):
    """Labels drawn from sigmoid(z); the model reports sigmoid(z * T): fitting must find T."""
    rng = random.Random(7)
    zs = [rng.gauss(0, 2) for _ in range(20000)]
    labels = [int(rng.random() < sigmoid(z)) for z in zs]
    reported = [sigmoid(z * true_t) for z in zs]
    fitted = fit_temperature(reported, labels)
    assert fitted == pytest.approx(true_t, rel=0.06)
    before = expected_calibration_error(reported, labels)
    after = expected_calibration_error([scale(p, fitted) for p in reported], labels)
    if true_t != 1.0:
        assert after < before


def test_calibration_file_round_trip_and_lookup(tmp_path):
    cal = Calibration(temperatures={"prompt": 2.0, "response": 0.5}, thresholds={"prompt": 0.4}, fitted_on={"prompt": 10})
    save_calibration(cal, tmp_path)
    assert load_calibration(tmp_path) == cal
    assert find_calibration("auto", tmp_path) == cal
    assert find_calibration("auto", tmp_path / "missing") is None
    assert find_calibration(None, tmp_path) is None
    assert cal.apply("prompt", 0.8) == pytest.approx(sigmoid(math.log(4) / 2))
    assert cal.apply("refusal", 0.8) == pytest.approx(scale(0.8, 0.5))  # refusal is read on the response line
    (tmp_path / "bad.json").write_text('{"temperatures": {"prompt": -1}}')
    with pytest.raises(ValueError, match="bad.json"):
        load_calibration(tmp_path / "bad.json")


def _rows(n_items: int, true_t: float, seed: int = 0):
    """Prediction rows whose raw P(harmful) is over-confident by a factor true_t in logit space."""
    rng = random.Random(seed)
    rows = []
    for i in range(n_items):
        z = rng.gauss(0, 2)
        gold = "harmful" if rng.random() < sigmoid(z) else "unharmful"
        p = sigmoid(z * true_t)
        rows.append({"dataset": "d", "item_id": str(i), "mode": "no_think", "task": "prompt", "sample_idx": 0,
                     "prompt_harm_gold": gold, "pred_prompt_harm": "harmful" if p >= 0.5 else "unharmful",
                     "p_prompt_harm_raw": p, "p_prompt_harm": p})
    return rows


def test_fit_calibration_on_a_validation_split_and_report_the_rest(tmp_path):
    from reasonguard.calibration import calibration_records, fit_calibration, is_validation_item
    from reasonguard.report import render_report, write_reliability_diagram

    rows = _rows(4000, 3.0)
    val = [r for r in rows if is_validation_item(r["dataset"], r["item_id"], 0.3)]
    held = [r for r in rows if not is_validation_item(r["dataset"], r["item_id"], 0.3)]
    assert 0.25 < len(val) / len(rows) < 0.35 and len(val) + len(held) == len(rows)
    cal = fit_calibration(val)
    assert cal.temperature("prompt", "no_think") == pytest.approx(3.0, rel=0.15)
    assert "response/no_think" not in cal.temperatures  # no response rows: left uncalibrated
    (rec,) = calibration_records(held, cal)
    assert rec["ece_after"] < rec["ece_before"] and rec["n_scored"] == len(held)
    assert 0 <= rec["f1_at_threshold"] <= 1 and rec["threshold"] is not None
    report = render_report("t", [], calibration=[{"guard": "g", **rec}])
    assert "ECE before" in report and "| g | no_think | prompt | d |" in report
    path = write_reliability_diagram({"raw": ([r["p_prompt_harm_raw"] for r in held], [int(r["prompt_harm_gold"] == "harmful") for r in held])},
                                     tmp_path / "reliability.png")
    assert path.exists() and path.stat().st_size > 1000
    assert write_reliability_diagram({"empty": ([], [])}, tmp_path / "none.png") is None


def test_too_few_validation_samples_leave_the_guard_uncalibrated():
    from reasonguard.calibration import fit_calibration

    assert fit_calibration(_rows(5, 2.0)).temperatures == {}


def test_metrics_records_carry_the_probability_metrics():
    from reasonguard.metrics import evaluate_by

    rows = _rows(200, 1.0, seed=3)
    for r in rows:
        r["parsed_ok"] = True
    (rec,) = evaluate_by(rows, ("mode",))
    s = [r["p_prompt_harm"] for r in rows]
    y = [int(r["prompt_harm_gold"] == "harmful") for r in rows]
    assert rec["auroc"] == pytest.approx(roc_auc_score(y, s)) and rec["n_scored"] == 200
    assert rec["brier"] == pytest.approx(brier_score_loss(y, s)) and rec["ece"] == pytest.approx(rec["ece_raw"])
