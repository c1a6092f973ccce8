"""`python -m jobs.predict --config cluster/configs/predict_local.yaml`: guard predictions as a Ray job.

Writes `output_dir/predictions/part-*.parquet` (one row per item, mode and sample), then
`predictions.parquet` and `metrics.json` (harmful-class F1 per dataset and mode). Re-running
with the same output_dir resumes: finished (item, mode, sample) rows are skipped.
"""

from __future__ import annotations

import sys

from reasonguard.config.predict import PredictConfig
from pipelines.predict import check_hygiene, format_table, run  # noqa: F401 - the stage body lives in pipelines


def main(argv=None) -> int:
    from jobs.common import stage_main

    return stage_main(PredictConfig, run, argv, "python -m jobs.predict", "Guard predictions over datasets (Ray Data + vLLM).")


if __name__ == "__main__":
    sys.exit(main())
