"""The SFT-data stage body: SFT chat rows built from labelled data and traces (reasonguard.sft).
`jobs.sft_data` is the entry point and documents the outputs.
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
