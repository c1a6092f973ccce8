"""The trace-import stage body: recorded teacher outputs read, converted, filtered and chosen
(reasonguard.trace_import). `jobs.import_traces` is the entry point and documents the outputs.
"""

from __future__ import annotations

import logging
import json
from collections import Counter
from pathlib import Path

from reasonguard.config.import_traces import ImportTracesConfig, TraceSource

log = logging.getLogger(__name__)


def load_candidates(source: TraceSource):
    """(candidates, skipped counts) of one source."""
    from reasonguard import trace_import

    if source.format == "guardreasoner":
        return trace_import.guardreasoner_candidates(_jsonl(source.resolved_path, source.limit), source.teachers)
    if source.format == "nemotron":
        from reasonguard.datasets.hub import load_nemotron_reasoning, nemotron_safety_example

        if source.resolved_path is None:
            examples = load_nemotron_reasoning("safety")[: source.limit]
        else:
            examples = [e for i, r in enumerate(_jsonl(source.resolved_path, source.limit)) if (e := nemotron_safety_example(r, i)) is not None]
        return trace_import.nemotron_candidates(examples, source.teachers)
    return trace_import.table_candidates(_table(source.resolved_path, source.limit))


def _jsonl(path: str, limit: int | None) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8-sig") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}, line {n}: not JSON ({exc.msg})") from None
            if limit is not None and len(rows) >= limit:
                break
    return rows


def _table(path: str, limit: int | None) -> list[dict]:
    import pyarrow.parquet as pq

    p = Path(path)
    if p.is_dir():
        p = p / "traces.parquet"
    rows = pq.read_table(p).to_pylist()
    return rows[:limit] if limit is not None else rows


def run(config: ImportTracesConfig) -> Path:
    from reasonguard.config import dump_config
    from reasonguard.io import write_json, write_single_parquet
    from reasonguard.trace_import import candidate_records, choose_traces, import_stats

    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(dump_config(config))
    count = None
    if config.tokenizer:
        from pipelines.llm import TokenCounter
        from reasonguard.models import resolve_model

        count = TokenCounter(resolve_model(config.tokenizer))
    records: list[dict] = []
    skipped: Counter = Counter()
    for source in config.sources:
        candidates, skip = load_candidates(source)
        skipped.update(skip)
        records += candidate_records(candidates, source.display_name, config.filters, count_tokens=count, policy=config.policy)
        log.info("%s: %d candidate traces (%s skipped)", source.display_name, len(candidates), dict(skip) or "none")
    if not records:
        raise ValueError("the sources yielded no traces to import")
    records = sorted(choose_traces(records, config.choose, config.teacher_order), key=lambda r: (r["dataset"], r["id"], r["teacher_model"]))
    kept = [r for r in records if r["kept"]]
    write_single_parquet(kept, out / "traces.parquet", schema_like=records)
    write_single_parquet([r for r in records if not r["kept"]], out / "rejected.parquet", schema_like=records)
    stats = import_stats(records, skipped, config.choose)
    write_json(stats, out / "stats.json")
    print(f"import_traces: {stats['chosen']} traces for {stats['items_with_a_chosen_trace']} of {stats['items']} items "
          f"({stats['kept']} of {stats['total']} passed the filters; rule {config.choose}) -> {out / 'traces.parquet'}")
    return out
