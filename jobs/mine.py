"""`python -m jobs.mine --config cluster/configs/mine_local.yaml`: difficult samples, then continual SFT.

Predicts N samples per pool item with the first-round guard, classifies every item as always
right, always wrong or inconsistent (reasonguard.mining), writes the inconsistent ones to
`output_dir/difficult.parquet` (trace-table columns, so training reads them directly) with the
class counts in `mining.json`, and, when `train` is set, continues SFT from the guard's checkpoint
on the difficult set (jobs.train; final checkpoint in `output_dir/train/final`).
"""

from __future__ import annotations

import sys

from reasonguard.config.mine import MineConfig
from pipelines.mine import load_pool, pool_rows, run  # noqa: F401 - the stage body lives in pipelines


def main(argv=None) -> int:
    from jobs.common import stage_main

    return stage_main(MineConfig, run, argv, "python -m jobs.mine", "Mine difficult samples and continue SFT on them.")


if __name__ == "__main__":
    sys.exit(main())
