"""Guard predictions at scale: Ray Data + vLLM engine actors (or any reasonguard engine).

preprocess (reasonguard.predict.request_row) -> engine (pipelines.llm) -> postprocess
(reasonguard.predict.result_row). Rows stream back to the driver and are written part by part,
so a run that dies keeps what it finished and a re-run resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import logging
from functools import partial
from pathlib import Path
from typing import Sequence

from reasonguard.engines.base import SamplingConfig
from reasonguard.io import PartWriter, done_keys
from reasonguard.predict import PredictionRow, expand_items, request_row, result_row
from reasonguard.schema import GuardExample
from reasonguard.config.predict import PredictConfig

log = logging.getLogger(__name__)
KEY = ["dataset", "item_id", "mode", "sample_idx"]
PREDICTION_COLUMNS = [f.name for f in dataclasses.fields(PredictionRow)]


def run_predictions(
    datasets: dict[str, Sequence[GuardExample]],
    modes: Sequence[str],
    n_samples: int,
    output_dir: str | Path,
    *,
    engine_config,
    sampling_by_mode: dict[str, SamplingConfig],
    policy=None,
    pipeline=None,
    constrained: bool = True,
    calibration=None,
    categories: bool = False,
) -> Path:
    """Predict every (dataset, item, mode, sample) not yet in `output_dir`/predictions; returns that folder.
    `constrained`: verdict-safe decoding; `calibration`: applied to P(harmful) (reasonguard.calibration);
    `categories`: ask for the violated categories too."""
    from pipelines.llm import write_stream
    from reasonguard.config.common import PipelineSettings

    pipeline = pipeline or PipelineSettings()

    parts = Path(output_dir) / "predictions"
    skip = done_keys(parts, KEY)
    work = [row for name, exs in datasets.items() for row in expand_items(exs, name, modes, n_samples, skip)]
    log.info("%d predictions to make (%d already done)", len(work), len(skip))
    if not work:
        return parts
    rows = PredictionStream(work, engine_config=engine_config, sampling_by_mode=sampling_by_mode, policy=policy,
                            pipeline=pipeline, constrained=constrained, calibration=calibration, categories=categories)
    write_stream(rows, PartWriter(parts), rows.post, "raw_output",
                 flush_every=pipeline.flush_every, total=len(work), desc="predict", columns=PREDICTION_COLUMNS)
    return parts


class PredictionStream:
    """Generated rows of `work` (expand_items rows) as they finish; `post` completes a row the vLLM
    stage failed on (pipelines.llm.skipped_postprocess). Shared by run_predictions and the benchmarks."""

    def __init__(self, work: list[dict], *, engine_config, sampling_by_mode: dict[str, SamplingConfig], policy=None,
                 pipeline=None, constrained: bool = True, calibration=None, categories: bool = False) -> None:
        from reasonguard.config.common import PipelineSettings
        from reasonguard.models import resolve_model

        self.work, self.engine_config, self.pipeline = work, engine_config, pipeline or PipelineSettings()
        constrained = constrained and engine_config.kind != "openai"  # a remote server decodes freely
        vocab_source = resolve_model(engine_config.model) if constrained else None
        if constrained:
            from pipelines.llm import room_for_verdicts

            sampling_by_mode = room_for_verdicts(sampling_by_mode, vocab_source, categories)
        self.pre = partial(request_row, sampling_by_mode=sampling_by_mode, policy=policy, constrained=constrained,
                           vocab_source=vocab_source, categories=categories)
        self.post = partial(result_row, model_id=engine_config.model, policy=policy, constrained=constrained,
                            vocab_source=vocab_source, sampling_by_mode=sampling_by_mode, calibration=calibration,
                            categories=categories)

    def __iter__(self):
        from pipelines.llm import generate

        return iter(generate(self.work, self.engine_config, self.pre, self.post, self.pipeline))



# --- The stage body (jobs.predict is its command-line entry point) ---


def run_identity(config: PredictConfig) -> dict:
    """What decides a prediction (reasonguard.run_identity): a re-run into the same folder resumes only
    when these match; more datasets, modes or samples extend the run."""
    from reasonguard.run_identity import engine_identity

    return {"engine": engine_identity(config.engine),
            **config.model_dump(mode="json", include={"sampling", "max_tokens_by_mode", "policy", "decoding", "categories"})}


def run(config: PredictConfig, restart_on_change: bool = False) -> Path:
    """Predict, then write `predictions.parquet` (exactly this run's items, modes and samples) and
    `metrics.json`; stages that chain predict (evaluate, demo) read those two files. An output folder of
    another configuration is an error, or is started afresh with `restart_on_change`."""
    from pipelines.ray_utils import init_ray
    from reasonguard.datasets.sources import load_predict_datasets
    from reasonguard.io import read_parts, write_json, write_single_parquet
    from reasonguard.categories import category_report, category_table
    from reasonguard.metrics import evaluate_by
    from reasonguard.run_identity import claim_output_dir

    datasets = load_predict_datasets(config)  # before Ray starts: a missing dataset fails in seconds
    log.info("datasets: %s", {k: len(v) for k, v in datasets.items()})
    check_hygiene(config, datasets)
    init_ray(config.ray.address, config.ray.num_cpus, config.ray.wait_for_min_actors_s)
    out = Path(config.output_dir)
    claim_output_dir(out, run_identity(config), "predictions", restart_on_change=restart_on_change)
    (out / "config.yaml").write_text(_dump(config))
    parts = run_predictions(
        datasets, config.modes, config.n_samples, out, engine_config=config.engine,
        sampling_by_mode=config.sampling_by_mode(), policy=config.policy, pipeline=config.pipeline,
        constrained=config.decoding.constrained, calibration=guard_calibration(config), categories=config.categories,
    )
    # Keyed on (dataset, item_id): a reused output_dir may hold other items of the same dataset
    # (another suite_sample, limit or split), which must not mix into this run's metrics.
    wanted = {(name, ex.id) for name, examples in datasets.items() for ex in examples}
    rows = [r for r in read_parts(parts)
            if (r["dataset"], r["item_id"]) in wanted and r["mode"] in config.modes and r["sample_idx"] < config.n_samples]
    write_single_parquet(rows, out / "predictions.parquet")
    reports = evaluate_by(rows, ("mode",))
    categories = category_report(rows) if config.categories else []
    write_json({"model": config.engine.model, "reports": reports, **({"categories": categories} if config.categories else {})},
               out / "metrics.json")
    print(format_table(reports))
    if categories:
        print(category_table(categories))
    log.info("wrote %s (%d rows)", out, len(rows))
    return out


def read_results(output_dir: str | Path) -> tuple[list[dict], list[dict]]:
    """(prediction rows, metric records) that `run` wrote in `output_dir`."""
    import json

    from reasonguard.io import read_parts

    out = Path(output_dir)
    return read_parts(out / "predictions.parquet"), json.loads((out / "metrics.json").read_text())["reports"]


def guard_calibration(config: PredictConfig):
    """The Calibration `decoding.calibration` names for this guard (None: raw probabilities)."""
    from reasonguard.calibration import find_calibration

    model_dir = None
    if config.engine.kind != "openai":
        from reasonguard.models import resolve_model

        model_dir = resolve_model(config.engine.model)
    return find_calibration(config.decoding.calibration, model_dir)


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
        scores = (f"{'unlabelled: no gold labels':<29s}" if r.get("unlabelled") else
                  f"{r['f1_mean']:6.3f} {r['majority_f1']:7.3f} {r['precision_mean']:6.3f} {r['recall_mean']:6.3f}")
        lines.append(
            f"{r['dataset'][:24]:24s} {r['task']:8s} {r['mode']:8s} {r['n_items']:4d} {scores} "
            f"{100 * r['parse_failure_rate']:6.1f} "
            f"{_num(r.get('auroc'))} {_num(r.get('brier'))} {_num(r.get('ece'))} {r['mean_output_tokens']:7.1f}"
        )
    return "\n".join(lines)


def _num(value) -> str:
    return f"{'-':>6s}" if value is None or value != value else f"{value:6.3f}"


def _dump(config) -> str:
    from reasonguard.config import dump_config

    return dump_config(config)
