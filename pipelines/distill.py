"""Teacher distillation at scale: Ray Data + vLLM teacher actors (or any reasonguard engine).

preprocess (reasonguard.distill.teacher_request_row) -> teacher engine (pipelines.llm) ->
postprocess (reasonguard.distill.teacher_result_row: parse + filter). Rows stream back to the
driver and are written part by part (kept and dropped alike), so a run that dies keeps what it
finished and a re-run skips every item already done; only inference errors are tried again.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Callable, Iterator, Sequence

from pipelines.llm import PARTS, generate, token_counter, write_stream
from reasonguard.distill import (
    distill_stats,
    done_key_filter,
    latest_records,
    split_labelled,
    teacher_request_row,
    teacher_result_row,
    work_rows,
)
from reasonguard.engines.base import SamplingConfig
from reasonguard.io import PartWriter, read_parts, write_json, write_single_parquet
from reasonguard.schema import GuardExample
from reasonguard.config.distill import DistillConfig

log = logging.getLogger(__name__)
def run_distill(
    datasets: dict[str, Sequence[GuardExample]],
    output_dir: str | Path,
    *,
    engine_config,
    sampling: SamplingConfig,
    filters,
    pipeline,
    policy=None,
    max_sentences: int = 8,
    tokenizer: str | None = None,
    constrained: bool = False,
) -> Path:
    """Distill every labelled item not yet in `output_dir/parts`, then write traces, rejected and stats."""
    out = Path(output_dir)
    parts = out / PARTS
    done = {(r["dataset"], r["id"]) for r in read_parts(parts, ["dataset", "id", "drop_reason"]) if done_key_filter(r)}
    work, unlabelled = [], 0
    for name, examples in datasets.items():
        usable, rest = split_labelled(examples)
        unlabelled += len(rest)
        work += work_rows(usable, name, done)
    log.info("%d items to distill (%d already done, %d without a gold label)", len(work), len(done), unlabelled)
    if work:
        if constrained:  # the think block and both verdict lines must fit the teacher's max_tokens
            from pipelines.llm import room_for_verdicts
            from reasonguard.models import resolve_model

            sampling = room_for_verdicts({"think": sampling}, resolve_model(engine_config.model))["think"]
        pre = partial(teacher_request_row, sampling=sampling, policy=policy, max_sentences=max_sentences,
                      constrained=constrained)
        post = partial(teacher_result_row, filters=filters, teacher_model=engine_config.model, policy=policy,
                       count_tokens=token_counter(tokenizer, engine_config))
        rows = generate(work, engine_config, pre, post, pipeline)
        write_stream(rows, PartWriter(parts), post, "kept", flush_every=pipeline.flush_every, total=len(work), desc="distill")
    return finalize_distill(out, datasets, unlabelled, engine_config.model)


def finalize_distill(out: Path, datasets: dict[str, Sequence[GuardExample]], unlabelled: int, teacher_model: str) -> Path:
    """traces.parquet (kept), rejected.parquet (dropped, with reasons) and stats.json from the parts."""
    wanted = {(name, ex.id) for name, exs in datasets.items() for ex in exs}
    records = sorted((r for r in latest_records(read_parts(out / PARTS)) if (r["dataset"], r["id"]) in wanted),
                     key=lambda r: (r["dataset"], r["id"]))
    kept = [r for r in records if r["kept"]]
    write_single_parquet(kept, out / "traces.parquet", schema_like=records)
    write_single_parquet([r for r in records if not r["kept"]], out / "rejected.parquet", schema_like=records)
    stats = distill_stats(records, unlabelled, teacher_model)
    write_json(stats, out / "stats.json")
    log.info("kept %d of %d traces; dropped %s", stats["kept"], stats["total"],
             {k: v for k, v in stats["dropped"].items() if v})
    return out


# --- The stage body (jobs.distill is its command-line entry point) ---


def run_identity(config: DistillConfig) -> dict:
    """What decides a trace and its filtering (reasonguard.run_identity): a re-run into the same folder
    resumes only when these match; more data extends the run."""
    from reasonguard.run_identity import engine_identity

    return {"engine": engine_identity(config.engine),
            **config.model_dump(mode="json", include={"sampling", "max_sentences", "policy", "filters"}),
            **({"constrained": True} if config.constrained else {})}  # absent when off: earlier runs still match


def run(config: DistillConfig, restart_on_change: bool = False) -> Path:
    """Run the distillation stage; returns output_dir. An output folder of another configuration is an
    error, or is started afresh with `restart_on_change`."""
    from pipelines.distill import run_distill
    from pipelines.ray_utils import init_ray
    from reasonguard.config import dump_config
    from reasonguard.run_identity import claim_output_dir

    from reasonguard.datasets.sources import load_sources

    datasets = load_sources(config.data)  # before Ray starts: a missing dataset fails in seconds
    log.info("datasets: %s", {k: len(v) for k, v in datasets.items()})
    out = Path(config.output_dir)
    claim_output_dir(out, run_identity(config), "traces", restart_on_change=restart_on_change)
    (out / "config.yaml").write_text(dump_config(config))
    init_ray(config.ray.address, config.ray.num_cpus, config.ray.wait_for_min_actors_s)
    run_distill(
        datasets, out, engine_config=config.engine, sampling=config.sampling.to_sampling(), filters=config.filters,
        pipeline=config.pipeline, policy=config.policy, max_sentences=config.max_sentences, tokenizer=config.tokenizer,
        constrained=config.constrained,
    )
    print(_summary(out))
    return out


def _summary(out: Path) -> str:
    import json

    stats = json.loads((out / "stats.json").read_text())
    dropped = ", ".join(f"{k} {v}" for k, v in stats["dropped"].items() if v) or "none"
    return f"distill: kept {stats['kept']} of {stats['total']} traces (dropped: {dropped}) -> {out / 'traces.parquet'}"
