"""`python -m jobs.import_traces --config cluster/configs/import_traces_local.yaml`: recorded teacher outputs
as a distillation trace table.

Reads GuardReasoner trace files, the Nemotron Content Safety Reasoning dataset or an earlier trace table,
converts each teacher's reasoning to plain prose about prompt and response harm, filters it with
distillation's own rules (label agreement with gold, well-formedness, label leakage, repetition,
length), applies the multi-teacher rule (`choose`) and writes, under output_dir, what a distill run
writes: `traces.parquet` (kept), `rejected.parquet` (dropped or not chosen, with reasons) and
`stats.json` (distillation's counts plus per teacher, the rule and skipped rows). No Ray: it is
file-to-file and takes seconds for thousands of traces.
"""

from __future__ import annotations

import sys

from reasonguard.config.import_traces import ImportTracesConfig, TraceSource
from pipelines.import_traces import load_candidates, run  # noqa: F401 - the stage body lives in pipelines


def main(argv=None) -> int:
    from jobs.common import stage_main

    return stage_main(ImportTracesConfig, run, argv, "python -m jobs.import_traces",
                      "Recorded teacher outputs (GuardReasoner, Nemotron, earlier runs) -> a filtered trace table.")


if __name__ == "__main__":
    sys.exit(main())
