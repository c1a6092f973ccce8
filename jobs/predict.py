"""`python -m jobs.predict --config cluster/configs/predict_local.yaml`: guard predictions as a Ray job.

Writes `output_dir/predictions/part-*.parquet` (one row per item, mode and sample), then
`predictions.parquet` and `metrics.json` (harmful-class F1 per dataset and mode). Re-running
with the same output_dir resumes: finished (item, mode, sample) rows are skipped.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from reasonguard.config.predict import PredictConfig

log = logging.getLogger("jobs.predict")


def run(config: PredictConfig) -> Path:
    from pipelines.predict import run_predictions
    from pipelines.ray_utils import init_ray
    from reasonguard.io import read_parts, write_json, write_single_parquet
    from reasonguard.metrics import evaluate_by

    datasets = config.load_datasets()  # before Ray starts: a missing dataset fails in seconds
    log.info("datasets: %s", {k: len(v) for k, v in datasets.items()})
    check_hygiene(config, datasets)
    init_ray(config.ray.address, config.ray.num_cpus, config.ray.wait_for_min_actors_s)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(_dump(config))
    parts = run_predictions(
        datasets, config.modes, config.n_samples, out, engine_config=config.engine,
        sampling_by_mode=config.sampling_by_mode(), policy=config.policy, batch_size=config.pipeline.batch_size,
        concurrency=config.pipeline.concurrency, gpus_per_replica=config.pipeline.gpus_per_replica,
        flush_every=config.pipeline.flush_every, constrained=config.decoding.constrained, calibration=config.calibration(),
    )
    wanted = set(datasets)
    rows = [r for r in read_parts(parts) if r["dataset"] in wanted and r["mode"] in config.modes and r["sample_idx"] < config.n_samples]
    write_single_parquet(rows, out / "predictions.parquet")
    reports = evaluate_by(rows, ("mode",))
    write_json({"model": config.engine.model, "reports": reports}, out / "metrics.json")
    print(format_table(reports))
    log.info("wrote %s (%d rows)", out, len(rows))
    return out


def check_hygiene(config: PredictConfig, datasets: dict) -> None:
    """Refuse test sets that share prompts with the guard's training rows (reasonguard.hygiene)."""
    from reasonguard.hygiene import check_test_sets, read_fingerprints

    if config.engine.kind == "openai":
        return
    from reasonguard.models import resolve_model

    check_test_sets(datasets, read_fingerprints(resolve_model(config.engine.model)), config.engine.model)


def format_table(reports: list[dict]) -> str:
    """A small fixed-width table: dataset, task, mode, F1 (mean over samples, majority vote), parse failures,
    the P(harmful) metrics (AUROC, Brier, ECE; '-' where undefined), tokens."""
    head = (f"{'dataset':24s} {'task':8s} {'mode':8s} {'n':>4s} {'F1':>6s} {'F1 vote':>7s} {'P':>6s} {'R':>6s} {'fail%':>6s} "
            f"{'AUROC':>6s} {'Brier':>6s} {'ECE':>6s} {'out tok':>7s}")
    lines = [head, "-" * len(head)]
    for r in reports:
        lines.append(
            f"{r['dataset'][:24]:24s} {r['task']:8s} {r['mode']:8s} {r['n_items']:4d} {r['f1_mean']:6.3f} {r['majority_f1']:7.3f} "
            f"{r['precision_mean']:6.3f} {r['recall_mean']:6.3f} {100 * r['parse_failure_rate']:6.1f} "
            f"{_num(r.get('auroc'))} {_num(r.get('brier'))} {_num(r.get('ece'))} {r['mean_output_tokens']:7.1f}"
        )
    return "\n".join(lines)


def _num(value) -> str:
    return f"{'-':>6s}" if value is None or value != value else f"{value:6.3f}"


def _dump(config) -> str:
    from reasonguard.config import dump_config

    return dump_config(config)


def main(argv=None) -> int:
    from jobs.common import stage_main

    return stage_main(PredictConfig, run, argv, "python -m jobs.predict", "Guard predictions over datasets (Ray Data + vLLM).")


if __name__ == "__main__":
    sys.exit(main())
