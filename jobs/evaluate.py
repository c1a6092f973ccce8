"""`python -m jobs.evaluate --config cluster/configs/evaluate_local.yaml`: guards over the suite, one report.

For each guard: predictions (jobs.predict, resumable) under `output_dir/<guard>/`. Then
`metrics.json` (per guard, mode, dataset and task: P, R, F1 as mean over samples and by majority
vote, parse-failure rate, output tokens, mean/p90 latency; suite averages per task),
`report.md` (paper-shaped tables: rows = guard/mode, columns = datasets, average) and PNG plots.
P(harmful) is scored too (AUROC, AUPRC, Brier, ECE), and a temperature calibration is fitted per
guard on a validation split of the items (`calibration.json` in the guard's folder, optionally
beside its checkpoint), with ECE before/after and F1 at the validation threshold on the other
items, and a reliability diagram.
"""

from __future__ import annotations

import sys

from reasonguard.config.evaluate import EvaluateConfig
from pipelines.evaluate import fit_and_report_calibration, run  # noqa: F401 - the stage body lives in pipelines


def main(argv=None) -> int:
    from jobs.common import stage_main

    return stage_main(EvaluateConfig, run, argv, "python -m jobs.evaluate", "Evaluate guards over the suite: metrics, report, plots.")


if __name__ == "__main__":
    sys.exit(main())
