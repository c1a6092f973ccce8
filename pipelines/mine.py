"""The mining stage body: sample the guard N times over a pool, keep the inconsistent items, continue SFT.
`jobs.mine` is the entry point and documents the outputs.
"""

from __future__ import annotations

import logging
from pathlib import Path

from reasonguard.config.mine import MineConfig

log = logging.getLogger(__name__)


def pool_rows(examples, traces: dict[str, dict]) -> list[dict]:
    """Trace-table rows (what training reads) of pool examples, with their reasoning when they have one."""
    return [{**e.to_row(), "reasoning": None, **traces.get(e.id, {})} for e in examples]


def load_pool(config: MineConfig) -> tuple[list, dict[str, dict]]:
    """Pool examples and, when they come from traces, each id's trace columns."""
    from reasonguard.schema import GuardExample

    from reasonguard.datasets.sources import load_source

    examples = [e for source in config.pool for e in load_source(source)]
    traces: dict[str, dict] = {}
    if config.pool_traces:
        from reasonguard.sft import read_rows

        for row in read_rows(config.pool_traces):
            if row.get("kept", True) is False:
                continue
            example = GuardExample.from_row(row)
            examples.append(example)
            traces[example.id] = {k: v for k, v in row.items() if k.startswith("reasoning")}
    ids = [e.id for e in examples]
    if len(set(ids)) != len(ids):
        raise ValueError("pool item ids repeat across sources; give each source a distinct dataset or name")
    if config.exclude_trained:
        examples = untrained(examples, config)
    return examples, traces


def untrained(examples: list, config: MineConfig) -> list:
    """The pool items whose prompt the guard was not trained on (reasonguard.hygiene fingerprints beside
    its checkpoint; a guard without them, e.g. a hub model, keeps the whole pool)."""
    from reasonguard.hygiene import fingerprint, read_fingerprints

    if config.guard.kind == "openai":
        return examples
    from reasonguard.models import resolve_model

    prints = read_fingerprints(resolve_model(config.guard.model)) or set()
    kept = [e for e in examples if fingerprint(e.prompt) not in prints]
    if len(kept) < len(examples):
        log.info("pool: %d of %d items left out, the guard was trained on them", len(examples) - len(kept), len(examples))
    return kept


def run_identity(config: MineConfig) -> dict:
    """What decides the mined samples (reasonguard.run_identity): a re-run into the same folder resumes its
    prediction parts only when these match (another guard's samples would mix into the counts)."""
    from reasonguard.run_identity import engine_identity

    return {"engine": engine_identity(config.guard),
            **config.model_dump(mode="json", include={"mode", "sampling", "max_tokens_by_mode", "policy"})}


def run(config: MineConfig) -> Path:
    from pipelines.predict import run_predictions
    from pipelines.ray_utils import init_ray
    from reasonguard.io import read_parts, write_json, write_single_parquet
    from reasonguard.mining import classify_items, select_inconsistent
    from reasonguard.run_identity import claim_output_dir

    examples, traces = load_pool(config)
    log.info("pool: %d items", len(examples))
    init_ray(config.ray.address, config.ray.num_cpus, config.ray.wait_for_min_actors_s)
    out = Path(config.output_dir)
    claim_output_dir(out, run_identity(config), "mined predictions")
    sampling = config.sampling.by_mode([config.mode], config.max_tokens_by_mode)
    parts = run_predictions(
        {"pool": examples}, [config.mode], config.n_samples, out, engine_config=config.guard, sampling_by_mode=sampling,
        policy=config.policy, pipeline=config.pipeline,
    )
    wanted = {e.id for e in examples}  # a reused folder may hold other pool items: they are not this run's
    rows = [r for r in read_parts(parts)
            if r["item_id"] in wanted and r["mode"] == config.mode and r["sample_idx"] < config.n_samples]
    result = classify_items(rows)
    hard = set(select_inconsistent(result))
    difficult = pool_rows([e for e in examples if e.id in hard], traces)
    summary = {"pool": len(examples), "n_samples": config.n_samples, "mode": config.mode, "counts": result.counts,
               "unlabelled": result.n_unlabelled, "difficult": len(difficult)}
    write_json(summary, out / "mining.json")
    print(f">> mining: {summary}")
    if not difficult:
        log.warning("no inconsistent items: nothing to train on")
        return out
    path = write_single_parquet(difficult, out / "difficult.parquet")
    if config.train is not None:
        from pipelines.train import train

        train_config = config.train_config(str(path))
        if len(difficult) < train_config.global_batch_size:
            raise ValueError(f"{len(difficult)} difficult items (written to {path}) make no training step of global batch "
                             f"{train_config.global_batch_size}: lower train.global_batch_size or mine a larger pool")
        final = train(train_config)
        print(f">> continual SFT checkpoint: {final}")
    return out
