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

import logging
import sys
from pathlib import Path

from reasonguard.config.distill import DistillConfig

log = logging.getLogger("jobs.distill")


def run(config: DistillConfig) -> Path:
    """Run the distillation stage; returns output_dir."""
    from pipelines.distill import run_distill
    from pipelines.ray_utils import init_ray
    from reasonguard.config import dump_config

    datasets = config.load_datasets()  # before Ray starts: a missing dataset fails in seconds
    log.info("datasets: %s", {k: len(v) for k, v in datasets.items()})
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(dump_config(config))
    init_ray(config.ray.address, config.ray.num_cpus, config.ray.wait_for_min_actors_s)
    run_distill(
        datasets, out, engine_config=config.engine, sampling=config.sampling.to_sampling(), filters=config.filters,
        pipeline=config.pipeline, policy=config.policy, max_sentences=config.max_sentences, tokenizer=config.tokenizer,
    )
    print(_summary(out))
    return out


def _summary(out: Path) -> str:
    import json

    stats = json.loads((out / "stats.json").read_text())
    dropped = ", ".join(f"{k} {v}" for k, v in stats["dropped"].items() if v) or "none"
    return f"distill: kept {stats['kept']} of {stats['total']} traces (dropped: {dropped}) -> {out / 'traces.parquet'}"


def main(argv=None) -> int:
    from jobs.common import stage_main

    return stage_main(DistillConfig, run, argv, "python -m jobs.distill",
                      "Teacher reasoning traces with Ray Data + vLLM, filtered (verdict = gold, no loops, no label leakage).")


if __name__ == "__main__":
    sys.exit(main())
