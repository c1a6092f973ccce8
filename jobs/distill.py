"""`python -m jobs.distill --config cluster/configs/distill_local.yaml`: teacher reasoning traces as a Ray job.

The teacher (a local vLLM with tensor parallel, transformers, or an OpenAI-compatible endpoint)
explains each item's gold label; traces whose verdict differs from the label, that loop, quote
the label or break the length bounds are dropped with a named reason. Writes, under output_dir:

- `parts/part-*.parquet`: every finished item (kept and dropped), written as rows finish;
- `traces.parquet`: kept traces (the item's columns, `reasoning`, teacher verdict, raw output, token counts);
- `rejected.parquet`: dropped traces with `drop_reason`, `drop_reasons` and `drop_detail`;
- `stats.json`: totals, kept, dropped by reason, per dataset, reasoning lengths.

Re-running with the same output_dir resumes: finished items are skipped, inference errors retried.

    python -m jobs.distill --config cluster/configs/distill_local.yaml [--set data.0.limit=8]
    ray job submit --working-dir . -- python -m jobs.distill --config cluster/configs/distill_gpu.yaml
    # KubeRay: the same command as the RayJob entrypoint (kuberay/)
"""

from __future__ import annotations

import sys

from reasonguard.config.distill import DistillConfig
from pipelines.distill import run  # noqa: F401 - the stage body lives in pipelines


def main(argv=None) -> int:
    from jobs.common import stage_main

    return stage_main(DistillConfig, run, argv, "python -m jobs.distill",
                      "Teacher reasoning traces with Ray Data + vLLM, filtered (verdict = gold, no loops, no label leakage).")


if __name__ == "__main__":
    sys.exit(main())
