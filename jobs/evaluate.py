"""`python -m jobs.evaluate --config cluster/configs/evaluate_local.yaml`: guards over the suite, one report.

For each guard: predictions (jobs.predict, resumable) under `output_dir/<guard>/`. Then
`metrics.json` (per guard, mode, dataset and task: P, R, F1 as mean over samples and by majority
vote, parse-failure rate, output tokens, mean/p90 latency; suite averages per task),
`report.md` (paper-shaped tables: rows = guard/mode, columns = datasets, average) and PNG plots.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from reasonguard.config.evaluate import EvaluateConfig

log = logging.getLogger("jobs.evaluate")


def run(config: EvaluateConfig) -> Path:
    from jobs.predict import run as run_predict
    from reasonguard.io import read_parts, write_json
    from reasonguard.metrics import evaluate_by
    from reasonguard.report import render_report, summary, write_plots

    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    records: list[dict] = []
    for guard in config.guards:
        pred = config.predict_config(guard)
        run_predict(pred)
        rows = [r for r in read_parts(Path(pred.output_dir) / "predictions") if r["mode"] in pred.modes and r["sample_idx"] < pred.n_samples]
        for rec in evaluate_by(rows, ("mode",)):
            records.append({"guard": guard.name, "model": guard.engine.model, "budget": guard.budget, **rec})
    plots = write_plots(records, out)
    write_json({"title": config.title, "reports": records, "averages": summary(records)}, out / "metrics.json")
    (out / "report.md").write_text(render_report(config.title, records, [str(p) for p in plots]))
    print((out / "report.md").read_text())
    return out


def main(argv=None) -> int:
    from jobs.common import stage_main

    return stage_main(EvaluateConfig, run, argv, "python -m jobs.evaluate", "Evaluate guards over the suite: metrics, report, plots.")


if __name__ == "__main__":
    sys.exit(main())
