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

import logging
import sys
from pathlib import Path

from reasonguard.config.distill import ShortenConfig

log = logging.getLogger("jobs.shorten")


def run(config: ShortenConfig) -> Path:
    """Run the budget stage; returns output_dir."""
    from pipelines.ray_utils import init_ray
    from pipelines.shorten import load_traces, run_shorten
    from reasonguard.config import dump_config

    traces = load_traces(config.traces, config.limit)  # before Ray starts: a missing input fails at once
    log.info("%d traces, budgets %s", len(traces), config.budgets)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(dump_config(config))
    if traces:  # nothing kept upstream: write empty outputs without starting Ray
        init_ray(config.ray.address, config.ray.num_cpus, config.ray.wait_for_min_actors_s)
    run_shorten(traces, config.budgets, out, engine_config=config.engine, sampling=config.sampling.to_sampling(),
                pipeline=config.pipeline, tokenizer=config.tokenizer)
    print(_summary(out))
    return out


def _summary(out: Path) -> str:
    import json

    stats = json.loads((out / "budget_stats.json").read_text())
    lines = [f"shorten: {stats['full']['n']} traces, full reasoning mean {stats['full']['tokens']['mean']} tokens"]
    for budget, s in stats["budgets"].items():
        lines.append(f"  budget {budget}: {s['methods']}, tokens mean {s['tokens']['mean']} p90 {s['tokens']['p90']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    from jobs.common import stage_main

    return stage_main(ShortenConfig, run, argv, "python -m jobs.shorten",
                      "Shorten teacher traces to reasoning budgets (LLM rewrite, checked, truncation fallback).")


if __name__ == "__main__":
    sys.exit(main())
