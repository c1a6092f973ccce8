"""Metrics of P(harmful) scores beside the verdict's F1: ranking (AUROC, AUPRC), calibration
(Brier score, expected calibration error, reliability bins) and thresholds (F1 at a threshold,
the F1-best threshold of a validation split).

Conventions: `labels` are 1 (positive, e.g. harmful) / 0; scores are probabilities in [0, 1].
A metric that needs both classes (AUROC, AUPRC) is NaN when one is missing; every metric is NaN
on no data. Ties are handled as scikit-learn does (AUROC by average ranks, AUPRC as average
precision over distinct thresholds), and tests check them against scikit-learn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

NAN = float("nan")
ECE_BINS = 10


def _arrays(scores: Sequence[float], labels: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=float)
    y = np.asarray(labels, dtype=int)
    if s.shape != y.shape:
        raise ValueError(f"{len(s)} scores for {len(y)} labels")
    if s.size and (np.any(~np.isfinite(s)) or s.min() < 0 or s.max() > 1):
        raise ValueError("scores must be probabilities in [0, 1]")
    if y.size and not set(np.unique(y)) <= {0, 1}:
        raise ValueError("labels must be 0 or 1")
    return s, y


def roc_auc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties)."""
    s, y = _arrays(scores, labels)
    n_pos, n_neg = int(y.sum()), int((1 - y).sum())
    if n_pos == 0 or n_neg == 0:
        return NAN
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=float)
    sorted_s = s[order]
    i = 0
    while i < len(s):  # average ranks over ties
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Area under the precision-recall curve as average precision: sum over distinct
    thresholds (descending) of (recall step) x precision."""
    s, y = _arrays(scores, labels)
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == len(y):
        return NAN
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last_of_ties = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tp = np.cumsum(y)[last_of_ties]
    fp = (last_of_ties + 1) - tp
    precision = tp / (tp + fp)
    recall = tp / n_pos
    steps = np.diff(np.r_[0.0, recall])
    return float(np.sum(steps * precision))


def brier_score(scores: Sequence[float], labels: Sequence[int]) -> float:
    s, y = _arrays(scores, labels)
    return float(np.mean((s - y) ** 2)) if s.size else NAN


@dataclass(frozen=True)
class ReliabilityBin:
    lower: float
    upper: float
    count: int
    mean_score: float
    positive_rate: float


def reliability_bins(scores: Sequence[float], labels: Sequence[int], n_bins: int = ECE_BINS) -> list[ReliabilityBin]:
    """Equal-width bins over [0, 1] (the last one closed): count, mean score, observed positive rate."""
    s, y = _arrays(scores, labels)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.digitize(s, edges[1:-1], right=False), 0, n_bins - 1)
    bins = []
    for b in range(n_bins):
        mask = index == b
        count = int(mask.sum())
        bins.append(ReliabilityBin(
            lower=float(edges[b]), upper=float(edges[b + 1]), count=count,
            mean_score=float(s[mask].mean()) if count else NAN, positive_rate=float(y[mask].mean()) if count else NAN,
        ))
    return bins


def expected_calibration_error(scores: Sequence[float], labels: Sequence[int], n_bins: int = ECE_BINS) -> float:
    """sum over bins of (bin share) x |mean score - positive rate|, equal-width bins."""
    s, _ = _arrays(scores, labels)
    if not s.size:
        return NAN
    return float(sum(b.count / len(s) * abs(b.mean_score - b.positive_rate) for b in reliability_bins(scores, labels, n_bins) if b.count))


def f1_at(scores: Sequence[float], labels: Sequence[int], threshold: float) -> float:
    """F1 of the positive class when score >= threshold flags (0/0 = 0)."""
    s, y = _arrays(scores, labels)
    pred = s >= threshold
    tp = int(np.sum(pred & (y == 1)))
    fp = int(np.sum(pred & (y == 0)))
    fn = int(np.sum(~pred & (y == 1)))
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def best_f1_threshold(scores: Sequence[float], labels: Sequence[int]) -> float:
    """The threshold (one of the scores, or 0.5 without data) with the highest F1; ties: the
    threshold closest to 0.5, so a flat region does not drift to an extreme."""
    s, y = _arrays(scores, labels)
    if not s.size or not y.sum():
        return 0.5
    candidates = np.unique(s)
    best = max(candidates, key=lambda t: (f1_at(s, y, float(t)), -abs(float(t) - 0.5)))
    return float(best)


def score_summary(scores: Sequence[float], labels: Sequence[int]) -> dict[str, float]:
    """The probability metrics of one group, for metrics.json (NaN where undefined)."""
    n = len(scores)
    return {
        "n_scored": n,
        "auroc": roc_auc(scores, labels) if n else NAN,
        "auprc": average_precision(scores, labels) if n else NAN,
        "brier": brier_score(scores, labels),
        "ece": expected_calibration_error(scores, labels),
    }


def is_number(value) -> bool:
    return value is not None and isinstance(value, (int, float)) and math.isfinite(value)
