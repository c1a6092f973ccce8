"""The evaluation stage body: every guard through predict, then metrics, calibration, report and plots.
`jobs.evaluate` is the entry point and documents the outputs.
"""

from __future__ import annotations

import logging
from pathlib import Path

from reasonguard.config.evaluate import EvaluateConfig

log = logging.getLogger(__name__)


def run(config: EvaluateConfig) -> Path:
    from pipelines.predict import read_results
    from pipelines.predict import run as run_predict
    from reasonguard.categories import category_report
    from reasonguard.io import write_json
    from reasonguard.report import render_report, summary, write_plots, write_reliability_diagram

    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    records: list[dict] = []
    category_records: list[dict] = []
    calibration: list[dict] = []
    curves: dict[str, tuple[list[float], list[int]]] = {}
    for guard in config.guards:
        pred = config.predict_config(guard)
        run_predict(pred)
        rows, reports = read_results(pred.output_dir)
        for rec in reports:
            records.append({"guard": guard.name, "model": guard.engine.model, "budget": guard.budget, **rec})
        category_records += [{"guard": guard.name, **rec} for rec in category_report(rows)]
        if config.calibration.fit:
            cal_records, guard_curves = fit_and_report_calibration(config, guard, pred, rows)
            calibration += cal_records
            curves.update(guard_curves)
    plots = write_plots(records, out)
    diagram = write_reliability_diagram(curves, out / "reliability.png")
    if diagram is not None:
        plots.append(diagram)
    write_json({"title": config.title, "reports": records, "averages": summary(records), "calibration": calibration,
                "categories": category_records}, out / "metrics.json")
    (out / "report.md").write_text(render_report(config.title, records, [str(p) for p in plots], calibration=calibration,
                                                 categories=category_records))
    print((out / "report.md").read_text())
    return out


def fit_and_report_calibration(config: EvaluateConfig, guard, pred, rows: list[dict]):
    """Fit on the validation items, save calibration.json, and score the held-out items.
    Returns (calibration records, reliability curves {label: (scores, labels)})."""
    from reasonguard.calibration import calibration_records, fit_calibration, is_validation_item, save_calibration, scale

    fit = config.calibration
    validation = [r for r in rows if is_validation_item(r["dataset"], r["item_id"], fit.validation_fraction, fit.seed)]
    held_out = [r for r in rows if not is_validation_item(r["dataset"], r["item_id"], fit.validation_fraction, fit.seed)]
    cal = fit_calibration(validation, min_samples=fit.min_samples)
    save_calibration(cal, pred.output_dir)
    if fit.save_beside_checkpoint and cal.temperatures:
        model_dir = Path(guard.engine.model)
        if guard.engine.kind != "openai" and (model_dir / "config.json").exists():
            log.info("calibration saved beside %s", save_calibration(cal, model_dir))
        else:
            log.warning("guard %s: %s is not a local checkpoint; calibration.json stays in %s", guard.name, guard.engine.model, pred.output_dir)
    if not cal.temperatures:
        log.warning("guard %s: too few scored validation samples with both labels to calibrate", guard.name)
    records = [{"guard": guard.name, **r} for r in calibration_records(held_out, cal)]
    curves: dict[str, tuple[list[float], list[int]]] = {}
    for r in held_out:
        task, p, gold = r.get("task"), None, None
        if task in ("prompt", "response"):
            p, gold = r.get(f"p_{task}_harm_raw"), r.get(f"{task}_harm_gold")
        if p is None or gold is None or p != p:
            continue
        t = cal.temperature(task, r["mode"])
        for label, value in ((f"{guard.name}/{r['mode']} raw", p), (f"{guard.name}/{r['mode']} calibrated", scale(p, t) if t else None)):
            if value is not None:
                scores, labels = curves.setdefault(label, ([], []))
                scores.append(float(value))
                labels.append(int(gold == "harmful"))
    return records, curves
