"""`python -m jobs.shorten --config cluster/configs/shorten_local.yaml`: reasoning budgets as a Ray job.

An LLM rewrites each kept trace of a distill run into at most N sentences per budget (1 and 3 by
default). A rewrite must be non-empty, within the budget, keep the verdict where it states one and
add no label leakage; otherwise the trace is cut at a sentence boundary. Writes, under output_dir:

- `traces_budget_<N>.parquet`: the traces with `reasoning` shortened, `reasoning_full` kept,
  `method` (original | rewrite | truncate), `rewrite_error`, token counts;
- `traces_budgets.parquet`: one row per trace with `reasoning` (full) and `reasoning_<N>` per budget;
- `budget_stats.json`: per budget method counts, rewrite failures, token/word/sentence stats (mean, p50, p90, max).

    python -m jobs.shorten --config cluster/configs/shorten_local.yaml
    ray job submit --working-dir . -- python -m jobs.shorten --config cluster/configs/shorten_gpu.yaml
"""

from __future__ import annotations

import sys

from reasonguard.config.shorten import ShortenConfig
from pipelines.shorten import run  # noqa: F401 - the stage body lives in pipelines


def main(argv=None) -> int:
    from jobs.common import stage_main

    return stage_main(ShortenConfig, run, argv, "python -m jobs.shorten",
                      "Shorten teacher traces to reasoning budgets (LLM rewrite, checked, truncation fallback).")


if __name__ == "__main__":
    sys.exit(main())
