"""Temperature scaling of P(harmful), fitted on a validation split and stored with the guard.

p_calibrated = sigmoid(logit(p) / T), one T per task ("prompt", "response"): a single parameter,
monotone (AUROC and rankings unchanged), fitted by minimising the negative log-likelihood on
labelled validation scores. The fit is a bounded one-dimensional search over log T, so it needs
no optimiser library. `calibration.json` beside a checkpoint is picked up by predict and serve.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

CALIBRATION_FILE = "calibration.json"
_EPS = 1e-6
_LOG_T_RANGE = (-4.0, 4.0)  # T in [0.018, 54.6]


def logit(p: float) -> float:
    p = min(max(p, _EPS), 1 - _EPS)
    return math.log(p / (1 - p))


def sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def scale(p: float, temperature: float) -> float:
    return sigmoid(logit(p) / temperature)


def nll(logits: Sequence[float], labels: Sequence[int], temperature: float) -> float:
    total = 0.0
    for z, y in zip(logits, labels, strict=True):
        q = min(max(sigmoid(z / temperature), 1e-12), 1 - 1e-12)
        total -= math.log(q) if y else math.log(1 - q)
    return total / max(1, len(labels))


def fit_temperature(scores: Sequence[float], labels: Sequence[int], iterations: int = 80) -> float:
    """The T minimising NLL (golden-section search over log T; NLL is unimodal in it)."""
    if len(scores) != len(labels):
        raise ValueError(f"{len(scores)} scores for {len(labels)} labels")
    if not scores:
        raise ValueError("no validation scores to fit a temperature on")
    logits = [logit(p) for p in scores]
    lo, hi = _LOG_T_RANGE
    ratio = (math.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = nll(logits, labels, math.exp(a)), nll(logits, labels, math.exp(b))
    for _ in range(iterations):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = nll(logits, labels, math.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = nll(logits, labels, math.exp(b))
    return math.exp((lo + hi) / 2)


@dataclass(frozen=True)
class Calibration:
    """Per-task temperatures and thresholds, with how they were fitted."""

    temperatures: dict[str, float] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)  # F1-best on the validation split, calibrated scale
    method: str = "temperature"
    fitted_on: dict[str, int] = field(default_factory=dict)  # task -> validation samples
    notes: str = ""

    def temperature(self, line: str, mode: str | None = None) -> float | None:
        """The temperature of a verdict line ("prompt"/"response"), mode-specific when fitted so."""
        return self.temperatures.get(f"{line}/{mode}", self.temperatures.get(line))

    def threshold(self, line: str, mode: str | None = None) -> float | None:
        return self.thresholds.get(f"{line}/{mode}", self.thresholds.get(line))

    def apply(self, task: str, p: float | None, mode: str | None = None) -> float | None:
        if p is None:
            return None
        t = self.temperature("response" if task == "refusal" else task, mode)
        return p if t is None else scale(p, t)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_mapping(cls, data: Mapping) -> "Calibration":
        if data.get("method", "temperature") != "temperature":
            raise ValueError(f"unknown calibration method {data.get('method')!r}")
        temps = {str(k): float(v) for k, v in (data.get("temperatures") or {}).items()}
        if any(not (t > 0 and math.isfinite(t)) for t in temps.values()):
            raise ValueError(f"calibration temperatures must be positive numbers, got {temps}")
        return cls(temperatures=temps, thresholds={str(k): float(v) for k, v in (data.get("thresholds") or {}).items()},
                   fitted_on={str(k): int(v) for k, v in (data.get("fitted_on") or {}).items()}, notes=str(data.get("notes", "")))


def save_calibration(calibration: Calibration, folder: str | Path) -> Path:
    path = Path(folder) / CALIBRATION_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(calibration.to_json())
    tmp.replace(path)
    return path


def load_calibration(path_or_folder: str | Path) -> Calibration:
    path = Path(path_or_folder)
    if path.is_dir():
        path = path / CALIBRATION_FILE
    try:
        return Calibration.from_mapping(json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError, ValueError, TypeError) as exc:
        raise ValueError(f"{path}: not a valid calibration file ({exc})") from None


def find_calibration(setting: str | None, model_dir: str | Path | None) -> Calibration | None:
    """`setting`: None/'none' = no calibration; 'auto' = calibration.json beside the checkpoint if
    there is one; else a path to a calibration file or folder (an error when it is missing)."""
    if setting is None or setting == "none":
        return None
    if setting == "auto":
        if model_dir is None or not (Path(model_dir) / CALIBRATION_FILE).is_file():
            return None
        return load_calibration(model_dir)
    return load_calibration(setting)


# --- Fitting on prediction rows (the evaluate job) ------------------------------------------


def is_validation_item(dataset: str, item_id: str, fraction: float, seed: int = 0) -> bool:
    """A stable, seeded split of items (not samples): every sample of an item falls on one side."""
    import hashlib

    digest = hashlib.sha256(f"{seed}:{dataset}:{item_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def _scored(rows, line: str, mode: str) -> tuple[list[float], list[int]]:
    scores, labels = [], []
    for r in rows:
        p, gold = r.get(f"p_{line}_harm_raw"), r.get(f"{line}_harm_gold")
        if r.get("mode") != mode or r.get("task") != line or p is None or gold is None or p != p:
            continue
        scores.append(float(p))
        labels.append(int(gold == "harmful"))
    return scores, labels


def fit_calibration(validation_rows, min_samples: int = 10) -> Calibration:
    """Temperatures and F1-best thresholds per (line, mode) from validation prediction rows (raw scores).
    A (line, mode) with fewer than `min_samples` scored samples, or one class only, is left uncalibrated."""
    from reasonguard.score_metrics import best_f1_threshold

    rows = list(validation_rows)
    temps, thresholds, counts = {}, {}, {}
    for line in ("prompt", "response"):
        for mode in sorted({r.get("mode") for r in rows if r.get("mode")}):
            scores, labels = _scored(rows, line, mode)
            if len(scores) < min_samples or len(set(labels)) < 2:
                continue
            t = fit_temperature(scores, labels)
            key = f"{line}/{mode}"
            temps[key], counts[key] = t, len(scores)
            thresholds[key] = best_f1_threshold([scale(p, t) for p in scores], labels)
    return Calibration(temperatures=temps, thresholds=thresholds, fitted_on=counts,
                       notes="temperature scaling fitted by jobs.evaluate on a validation split (raw P(harmful))")


def calibration_records(held_out_rows, calibration: Calibration) -> list[dict]:
    """Per (mode, dataset, task) of held-out rows: ECE before/after the fitted calibration, and the
    harmful-class F1 at the validation threshold beside the verdict's own F1 (over samples)."""
    from reasonguard.score_metrics import expected_calibration_error, f1_at

    groups: dict[tuple[str, str, str], list[dict]] = {}
    for r in held_out_rows:
        if r.get("task") in ("prompt", "response"):
            groups.setdefault((r["mode"], r["dataset"], r["task"]), []).append(r)
    records = []
    for (mode, dataset, task), rows in sorted(groups.items()):
        scores, labels = _scored(rows, task, mode)
        t = calibration.temperature(task, mode)
        threshold = calibration.threshold(task, mode)
        calibrated = [scale(p, t) for p in scores] if t is not None else scores
        verdicts = [(r.get(f"pred_{task}_harm"), r.get(f"{task}_harm_gold")) for r in rows if r.get(f"{task}_harm_gold") is not None]
        tp = sum(1 for p, g in verdicts if p == "harmful" and g == "harmful")
        fp = sum(1 for p, g in verdicts if p == "harmful" and g != "harmful")
        fn = sum(1 for p, g in verdicts if p != "harmful" and g == "harmful")
        records.append({
            "mode": mode, "dataset": dataset, "task": task, "n_scored": len(scores), "temperature": t,
            "threshold": threshold,
            "ece_before": expected_calibration_error(scores, labels) if scores else float("nan"),
            "ece_after": expected_calibration_error(calibrated, labels) if scores else float("nan"),
            "f1_at_threshold": f1_at(calibrated, labels, threshold) if scores and threshold is not None else float("nan"),
            "f1_verdict": 2 * tp / (2 * tp + fp + fn) if tp else 0.0,
        })
    return records
