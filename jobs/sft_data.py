"""`python -m jobs.sft_data --config cluster/configs/sft_data_local.yaml`: SFT chat rows for the student.

Reads teacher traces (distill's `traces.parquet`, or shorten's `traces_budgets.parquet` with
`reasoning_<N>` columns) and/or plain labelled datasets, and writes one row per chat to `output`
(.parquet or .jsonl) plus `<output>.stats.json` (counts by mode, origin, label, and what was
skipped). Pure CPU work without Ray; it runs the same under `ray job submit ... -- python -m
jobs.sft_data --config ...`. jobs.train reads the file (`data.sft_path`), or builds the same rows
itself (`data.build`).

    python -m jobs.sft_data -c cluster/configs/sft_data_local.yaml --set budget=1 --set subset_size=500
"""

from __future__ import annotations

import sys

from reasonguard.config.sft_data import SftDataConfig
from pipelines.sft_data import run  # noqa: F401 - the stage body lives in pipelines


def main(argv=None) -> int:
    from jobs.common import stage_main

    return stage_main(SftDataConfig, run, argv, "python -m jobs.sft_data",
                      "Build SFT chat rows (reasoning / no-reasoning / dual-mode, budgets, subsets, topic mix).")


if __name__ == "__main__":
    sys.exit(main())
