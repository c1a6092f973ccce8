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
    joined = 0
    if config.categories is not None and config.categories.lookup:
        lookup = category_lookup(ex for source in config.categories.lookup for ex in load_source(source))
        traces, n_traces = join_categories(traces, lookup)
        labelled, n_labelled = join_categories(labelled, lookup)
        joined = n_traces + n_labelled
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
        held_out=held_out, categories_ratio=config.categories.ratio if config.categories is not None else None,
    )
    result.stats["inputs"] = {"traces": len(traces), "labelled": len(labelled), "topic_following": len(topic),
                              "held_out_prompts": len(held_out)}
    if config.categories is not None:
        result.stats["categories"]["joined_by_prompt"] = joined
    return result


def category_lookup(examples) -> dict[str, tuple[str, ...]]:
    """Prompt fingerprint -> Aegis codes, from labelled examples whose categories map (reasonguard.categories)."""
    from reasonguard.categories import aegis_codes
    from reasonguard.hygiene import fingerprint

    lookup: dict[str, tuple[str, ...]] = {}
    for example in examples:
        codes = aegis_codes(example.source, example.categories) if example.categories else None
        if codes:
            lookup.setdefault(fingerprint(example.prompt), codes)
    return lookup


def join_categories(items: Sequence[SourceItem], lookup: dict[str, tuple[str, ...]]) -> tuple[list[SourceItem], int]:
    """Items whose example has no categories of its own get the lookup's codes for its prompt
    (`extra['category_codes']`); returns the items and how many were joined."""
    import dataclasses

    from reasonguard.hygiene import fingerprint

    out, joined = [], 0
    for item in items:
        codes = None if item.example.categories else lookup.get(fingerprint(item.example.prompt))
        if codes:
            example = dataclasses.replace(item.example, extra={**item.example.extra, "category_codes": list(codes)})
            item, joined = dataclasses.replace(item, example=example), joined + 1
        out.append(item)
    return out, joined
