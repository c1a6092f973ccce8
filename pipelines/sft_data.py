"""The sft data stage body; `jobs.sft_data` is its entry point (config loading, CLI).

`python -m jobs.sft_data --config cluster/configs/sft_data_local.yaml`: SFT chat rows for the student.

Reads teacher traces (distill's `traces.parquet`, or shorten's `traces_budgets.parquet` with
`reasoning_<N>` columns) and/or plain labelled datasets, and writes one row per chat to `output`
(.parquet or .jsonl) plus `<output>.stats.json` (counts by mode, origin, label, and what was
skipped). Pure CPU work without Ray; it runs the same under `ray job submit ... -- python -m
jobs.sft_data --config ...`. jobs.train reads the file (`data.sft_path`), or builds the same rows
itself (`data.build`).

    python -m jobs.sft_data -c cluster/configs/sft_data_local.yaml --set budget=1 --set subset_size=500
"""

from __future__ import annotations

import logging
from pathlib import Path

from reasonguard.config.sft_data import SftDataConfig

log = logging.getLogger(__name__)


def run(config: SftDataConfig) -> Path:
    from reasonguard.io import write_json
    from reasonguard.sft import build_from_config, write_rows

    result = build_from_config(config)
    out = Path(write_rows(result.rows, config.output))
    write_json(result.stats, out.with_name(out.name + ".stats.json"))
    print(f"{len(result.rows)} SFT rows -> {out}")
    for key in ("by_mode", "by_origin", "by_label", "skipped"):
        print(f"  {key}: {result.stats[key]}")
    return out
