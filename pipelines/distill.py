"""Teacher distillation at scale: Ray Data + vLLM teacher actors (or any reasonguard engine).

preprocess (reasonguard.distill.teacher_request_row) -> teacher engine (pipelines.llm) ->
postprocess (reasonguard.distill.teacher_result_row: parse + filter). Rows stream back to the
driver and are written part by part (kept and dropped alike), so a run that dies keeps what it
finished and a re-run skips every item already done; only inference errors are tried again.
"""

from __future__ import annotations

import logging
from functools import lru_cache, partial
from pathlib import Path
from typing import Callable, Iterator, Sequence

from pipelines.llm import write_stream
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
PARTS = "parts"


@lru_cache(maxsize=4)
def _load_tokenizer(source: str) -> Callable[[str], int]:
    """A token counter for a local checkpoint folder or a hub id.

    `tokenizer.json` through the `tokenizers` library loads in 0.1 s; importing transformers takes
    ~7 s on 2 cores, paid by every Ray task worker that runs postprocess. AutoTokenizer is the
    fallback for models without a tokenizer.json.
    """
    folder = Path(source)
    path: Path | None = folder / "tokenizer.json"
    if not folder.exists():
        try:
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(source, "tokenizer.json"))
        except Exception:  # no tokenizer.json on the hub (or offline): transformers decides
            path = None
    if path is not None and path.exists():
        from tokenizers import Tokenizer

        fast = Tokenizer.from_file(str(path))
        return lambda text: len(fast.encode(text, add_special_tokens=False).ids)
    from transformers import AutoTokenizer

    slow = AutoTokenizer.from_pretrained(source)
    return lambda text: len(slow(text, add_special_tokens=False)["input_ids"])


class TokenCounter:
    """Counts tokens with a model's tokenizer; picklable (the tokenizer loads once per process)."""

    def __init__(self, source: str):
        self.source = source

    def __call__(self, text: str) -> int:
        return _load_tokenizer(self.source)(text)


def token_counter(tokenizer: str | None, engine_config) -> TokenCounter | None:
    """The configured tokenizer, else the engine's own for local engines; None (words only) for HTTP.

    Aliases resolve here, on the driver, so workers get a plain path (or hub id)."""
    from reasonguard.models import resolve_model

    name = tokenizer or (engine_config.model if engine_config.kind != "openai" else None)
    return TokenCounter(resolve_model(name)) if name else None


def generate(work: list[dict], engine_config, pre: Callable[[dict], dict], post: Callable[[dict], dict], pipeline) -> Iterator[dict]:
    """Stream `work` rows through preprocess -> engine -> postprocess; yields rows as they finish.

    vLLM engines go through `ray.data.llm` (vLLM actors, continuous batching); other kinds through
    an actor pool over the reasonguard engine. A row the vLLM stage failed on comes back without
    postprocess (ray.data.llm skips it), marked by `__inference_error__`: the caller handles it.
    """
    import ray.data

    from pipelines.llm import engine_stage, vllm_engine_kwargs, vllm_stage

    ds = ray.data.from_items(work, override_num_blocks=max(1, min(len(work) // pipeline.batch_size, 200)))
    if engine_config.kind == "vllm":
        from reasonguard.models import resolve_model

        model_path = resolve_model(engine_config.model)
        processor = vllm_stage(
            model_path, vllm_engine_kwargs(engine_config, model_path, pipeline.gpus_per_replica > 0), pre, post,
            batch_size=pipeline.batch_size, concurrency=pipeline.concurrency, gpus_per_replica=pipeline.gpus_per_replica,
        )
        ds = processor(ds)
    else:
        ds = engine_stage(ds, engine_config.model_dump(exclude_unset=True), pre, post, batch_size=pipeline.batch_size,
                          concurrency=pipeline.concurrency, gpus_per_replica=pipeline.gpus_per_replica)
    yield from ds.iter_rows()


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
        pre = partial(teacher_request_row, sampling=sampling, policy=policy, max_sentences=max_sentences)
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


def run(config: DistillConfig) -> Path:
    """Run the distillation stage; returns output_dir."""
    from pipelines.distill import run_distill
    from pipelines.ray_utils import init_ray
    from reasonguard.config import dump_config

    from reasonguard.datasets.sources import load_sources

    datasets = load_sources(config.data)  # before Ray starts: a missing dataset fails in seconds
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
