"""The experiment stage body: one study (train variants, evaluate them together, report).
`jobs.experiment` is the entry point and documents the outputs.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

from reasonguard.config.experiment import ExperimentConfig

log = logging.getLogger(__name__)


def run(config: ExperimentConfig) -> Path:
    from pipelines.evaluate import run as run_evaluate
    from pipelines.train import train

    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    guards: list[dict] = []
    variants: list[tuple[str, str, str]] = []  # (name, value, checkpoint)
    base_model = config.train["model"]
    if config.include_base:
        guards.append({"name": "base", "engine": {**config.guard_engine, "model": base_model}})
    if config.study == "refinement":
        variants += _refinement(config, train)
    else:
        for value in config.sweep():
            name = config.variant_name(value)
            final = train(config.train_config(name, value))
            variants.append((name, str(value), str(final)))
    for name, value, ckpt in variants:
        guard = {"name": name, "engine": {**config.guard_engine, "model": ckpt}}
        if config.study == "budget":
            guard["budget"] = value
        guards.append(guard)
    evaluated = run_evaluate(config.evaluate_config(guards))
    lines = [f"# Study: {config.study}", "", "| variant | value | checkpoint |", "|---|---|---|"]
    lines += [f"| {n} | {v} | `{c}` |" for n, v, c in variants]
    report = "\n".join(lines) + "\n\n" + (evaluated / "report.md").read_text().replace("](", "](evaluate/")
    (out / "report.md").write_text(report)
    print(f">> report: {out / 'report.md'}")
    return out


def _refinement(config: ExperimentConfig, train) -> list[tuple[str, str, str]]:
    """Round 1 on the base data; then continual SFT from it on mined difficult items and/or on random pool items."""
    from pipelines.mine import load_pool, pool_rows
    from pipelines.mine import run as run_mine
    from reasonguard.io import read_parts, write_single_parquet

    out = Path(config.output_dir)
    round1 = config.train_config("round1")
    first = str(train(round1))
    variants = [("round1", "-", first)]
    mine_cfg = config.mine_config(first, str(out / "mine"))
    run_mine(mine_cfg)
    difficult = out / "mine" / "difficult.parquet"
    if not difficult.exists():
        log.warning("mining found no inconsistent items; refinement variants skipped")
        return variants
    n_hard = len(read_parts(difficult))
    if n_hard < round1.global_batch_size:
        log.warning("mining found %d inconsistent items, fewer than one global batch (%d): refinement variants skipped",
                    n_hard, round1.global_batch_size)
        return variants
    sources = {"difficult": str(difficult)}
    if "random" in config.sweep():
        examples, traces = load_pool(mine_cfg)
        pick = random.Random(0).sample(examples, min(n_hard, len(examples)))
        sources["random"] = str(write_single_parquet(pool_rows(pick, traces), out / "mine" / "random.parquet"))
    for value in config.sweep():
        name = config.variant_name(value)
        build = deep_build(config, sources[value])
        final = train(config.train_config(name, model=first, data={"build": build, "sft_path": None}))
        variants.append((name, f"{value} ({n_hard} items)", str(final)))
    return variants


def deep_build(config: ExperimentConfig, traces_path: str) -> dict:
    build = dict((config.train.get("data") or {}).get("build") or {})
    build.update({"traces": [traces_path], "labelled": [], "subset_size": None, "topic_following": None})
    return build
