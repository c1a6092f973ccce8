"""Reasoning budgets at scale: an LLM rewrites each kept trace into at most N sentences (Ray Data).

Traces already within a budget skip the LLM; the rest go preprocess
(reasonguard.shorten.rewrite_request_row) -> rewriter engine -> postprocess
(reasonguard.shorten.rewrite_result_row: check, else truncate). Parts are written as rows finish,
so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Sequence

from pipelines.llm import PARTS, generate, token_counter, write_stream
from reasonguard.engines.base import SamplingConfig
from reasonguard.io import PartWriter, read_parts, trace_table_path, write_json, write_single_parquet
from reasonguard.shorten import (
    NO_REWRITER,
    budget_record,
    budget_stats,
    budget_work_rows,
    latest_budget_records,
    rewrite_request_row,
    rewrite_result_row,
    traces_of,
    wide_rows,
)
from reasonguard.config.shorten import ShortenConfig

log = logging.getLogger(__name__)


def load_traces(path: str | Path, limit: int | None = None) -> list[dict]:
    """Kept traces from a distill output_dir (its traces.parquet) or a traces parquet file."""
    file = trace_table_path(path)
    if not file.exists():
        raise FileNotFoundError(f"no traces at {file}: run jobs.distill first, or point 'traces' at a traces.parquet")
    traces = traces_of(read_parts(file))
    missing = {"dataset", "id", "reasoning", "prompt_harm_label", "response_harm_label"} - set(traces[0] if traces else {})
    if traces and missing:
        raise ValueError(f"{file} lacks the columns {sorted(missing)} (is it a distill traces.parquet?)")
    return traces[:limit] if limit else traces


def run_shorten(
    traces: Sequence[dict],
    budgets: Sequence[int],
    output_dir: str | Path,
    *,
    engine_config,
    sampling: SamplingConfig,
    pipeline,
    tokenizer: str | None = None,
) -> Path:
    """Shorten every (trace, budget) not yet in `output_dir/parts`, then write the budget files and stats."""
    out = Path(output_dir)
    parts = out / PARTS
    done = {(r["dataset"], r["id"], r["budget"]) for r in read_parts(parts, ["dataset", "id", "budget", "rewrite_error"])
            if r["rewrite_error"] != "inference_error"}
    to_rewrite, within = budget_work_rows(traces, budgets, done)
    log.info("%d rewrites to make, %d traces already within budget, %d done before", len(to_rewrite), len(within), len(done))
    counter = token_counter(tokenizer, engine_config)
    writer = PartWriter(parts)
    rewriter = engine_config.model if engine_config is not None else "none"
    writer.write([budget_record(_trace(r), r["budget"], None, rewriter_model=rewriter, count_tokens=counter)
                  for r in within])
    if to_rewrite and engine_config is None:  # no rewriter: sentence-boundary cuts, no Ray
        writer.write([budget_record(_trace(r), r["budget"], None, rewriter_model=rewriter, error=NO_REWRITER,
                                    count_tokens=counter) for r in to_rewrite])
    elif to_rewrite:
        pre = partial(rewrite_request_row, sampling=sampling)
        post = partial(rewrite_result_row, rewriter_model=engine_config.model, count_tokens=counter)
        rows = generate(to_rewrite, engine_config, pre, post, pipeline)
        write_stream(rows, writer, post, "method", flush_every=pipeline.flush_every, total=len(to_rewrite), desc="shorten")
    return finalize_shorten(out, traces, budgets)


def finalize_shorten(out: Path, traces: Sequence[dict], budgets: Sequence[int]) -> Path:
    """traces_budget_<N>.parquet per budget, traces_budgets.parquet (one wide row per trace), budget_stats.json."""
    wanted = {(t["dataset"], t["id"]) for t in traces}
    records = sorted(
        (r for r in latest_budget_records(read_parts(out / PARTS)) if (r["dataset"], r["id"]) in wanted and r["budget"] in budgets),
        key=lambda r: (r["dataset"], r["id"], r["budget"]),
    )
    for budget in budgets:
        write_single_parquet([r for r in records if r["budget"] == budget], out / f"traces_budget_{budget}.parquet", schema_like=records)
    wide = wide_rows(records, budgets)
    write_single_parquet(wide, out / "traces_budgets.parquet", schema_like=wide)
    stats = budget_stats(records, budgets)
    write_json(stats, out / "budget_stats.json")
    for budget, s in stats["budgets"].items():
        log.info("budget %s: %s, tokens mean %.1f p90 %.1f", budget, s["methods"], s["tokens"]["mean"], s["tokens"]["p90"])
    return out


def _trace(row: dict) -> dict:
    import json

    return json.loads(row["trace_json"])


# --- The stage body (jobs.shorten is its command-line entry point) ---


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
    if traces and config.engine is not None:  # no traces or no rewriter: no Ray
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
