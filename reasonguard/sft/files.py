"""SFT rows in and out of files, and the SFT-data stage's build from its config (the one part of
reasonguard.sft that reads data)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

from reasonguard.hygiene import training_fingerprints
from reasonguard.io import TRACE_FILES, read_parts, trace_table_path, write_single_parquet
from reasonguard.sft.rows import SftBuildResult, build_sft_rows
from reasonguard.sft.select import SourceItem, items_from_examples, items_from_traces


def read_rows(path: str) -> list[dict]:
    """Rows of a parquet file, a folder of parquet parts, a distill/shorten output folder (its trace
    table), or a jsonl/json/csv table (local or URL)."""
    from reasonguard.datasets import read_records

    local = Path(path)
    if local.is_dir():
        if any((local / name).exists() for name in TRACE_FILES):
            return read_parts(trace_table_path(local))
        rows = read_parts(local)
        if not rows:
            rows = [r for f in sorted(local.glob("*.parquet")) for r in read_parts(f)]
        if not rows:
            raise ValueError(f"{path} holds no parquet rows")
        return rows
    return read_records(path)


def write_rows(rows: Sequence[dict], path: str) -> str:
    """SFT rows as .parquet (default) or .jsonl, written atomically."""
    out = Path(path)
    if out.suffix == ".jsonl":
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".jsonl.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.replace(tmp, out)
    else:
        write_single_parquet(rows, out)
    return str(out)


def build_from_config(config) -> SftBuildResult:
    """`SftDataConfig` -> SFT rows: read traces, load labelled and topic-following data, build."""
    from reasonguard.datasets import load_dataset
    from reasonguard.datasets.sources import load_source

    traces = [it for path in config.traces for it in items_from_traces(read_rows(path), config.budget)]
    labelled = [it for source in config.labelled for it in items_from_examples(load_source(source))]
    held_out = training_fingerprints(
        {"prompt": ex.prompt} for source in config.held_out for ex in load_source(source))
    topic: list[SourceItem] = []
    if config.topic_following is not None:
        mix = config.topic_following
        topic = items_from_examples(load_dataset(mix.dataset, root=mix.root), "topic_following")
    result = build_sft_rows(
        traces, labelled, mode=config.mode, think_ratio=config.think_ratio, duplicate=config.dual_duplicate,
        budget=config.budget, subset_size=config.subset_size, topic_following=topic,
        topic_size=config.topic_following.size if config.topic_following else None, policy=config.policy, seed=config.seed,
        held_out=held_out,
    )
    result.stats["inputs"] = {"traces": len(traces), "labelled": len(labelled), "topic_following": len(topic),
                              "held_out_prompts": len(held_out)}
    return result
