"""Mining and evaluation killed mid-run and resumed (their predictions are predict's resumable parts):
`python -m jobs.mine` / `python -m jobs.evaluate` SIGKILLed (the whole process group, its own Ray included)
once a part is written, then run again: every (item, sample) exactly once, the killed run's rows kept as
written, and the stage's own outputs computed over all of them. Tiny model, transformers engine actors."""

from __future__ import annotations

import json
import sys
from collections import Counter

import pytest
import yaml

from reasonguard.io import read_parts

pytestmark = [pytest.mark.ray, pytest.mark.slow]

ENGINE = {"kind": "transformers", "device": "cpu", "batch_size": 2}
PIPELINE = {"batch_size": 2, "flush_every": 2}
RAY = {"num_cpus": 2, "wait_for_min_actors_s": 180}


def _killed_then_resumed(module: str, cfg: dict, parts, tmp_path, repo_root, total: int, run) -> tuple[list, list]:
    from processes import kill_after_first_part

    path = tmp_path / f"{module}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    kill_after_first_part([sys.executable, "-m", f"jobs.{module}", "--config", str(path)], parts,
                          tmp_path / f"{module}-first.log", repo_root)
    first = read_parts(parts)
    assert 0 < len(first) < total, "the run must be cut off midway"
    run()
    rows = read_parts(parts)
    counts = Counter((r["item_id"], r["mode"], r["sample_idx"]) for r in rows)
    assert len(counts) == total and set(counts.values()) == {1}  # nothing missing, nothing twice
    assert rows[: len(first)] == first  # the killed run's rows are kept as written
    return first, rows


def test_killed_mining_resumes_and_counts_every_sample_once(tmp_path, tiny_model_dir, repo_root):
    from jobs.mine import run
    from reasonguard.config.mine import MineConfig
    from reasonguard.run_identity import RunIdentityMismatch

    out, items, n = tmp_path / "mine", 5, 3
    cfg = {"guard": {**ENGINE, "model": tiny_model_dir}, "pool": [{"dataset": "demo", "split": "test", "limit": items}],
           "n_samples": n, "sampling": {"temperature": 1.0, "seed": 0}, "max_tokens_by_mode": {"no_think": 8},
           "output_dir": str(out), "ray": RAY, "pipeline": PIPELINE}
    config = MineConfig.model_validate(cfg)
    _, rows = _killed_then_resumed("mine", cfg, out / "predictions", tmp_path, repo_root, items * n, lambda: run(config))
    summary = json.loads((out / "mining.json").read_text())
    assert summary["pool"] == items and sum(summary["counts"].values()) == items  # every item classified, once
    assert {r["mode"] for r in rows} == {"no_think"}
    other = MineConfig.model_validate({**cfg, "mode": "think", "max_tokens_by_mode": {"think": 40}})
    with pytest.raises(RunIdentityMismatch, match="mode"):  # another run's samples would mix into the counts
        run(other)


def test_killed_evaluation_resumes_and_reports_on_every_item(tmp_path, tiny_model_dir, repo_root):
    from jobs.evaluate import run
    from reasonguard.config.evaluate import EvaluateConfig

    out, items = tmp_path / "eval", 5
    cfg = {"guards": [{"name": "tiny", "engine": {**ENGINE, "model": tiny_model_dir}}],
           "predict": {"data": [{"dataset": "demo", "split": "test", "limit": items}], "modes": ["no_think"],
                       "n_samples": 2, "max_tokens_by_mode": {"no_think": 8}, "ray": RAY, "pipeline": PIPELINE},
           "output_dir": str(out), "calibration": {"fit": False}}
    config = EvaluateConfig.model_validate(cfg)
    _killed_then_resumed("evaluate", cfg, out / "tiny" / "predictions", tmp_path, repo_root, items * 2, lambda: run(config))
    metrics = json.loads((out / "metrics.json").read_text())
    report = next(r for r in metrics["reports"] if r["guard"] == "tiny")
    assert report["n_items"] == items and report["n_samples"] == items * 2
    assert len(read_parts(out / "tiny" / "predictions.parquet")) == items * 2 and (out / "report.md").exists()


def test_killed_engine_actor_of_predict_loses_no_sample(tmp_path, tiny_model_dir):
    """SIGKILL one of two transformers engine actors while predict runs: Ray restarts it and retries its
    batch; every (item, mode, sample) is written once and greedy outputs equal those of an unkilled run."""
    import ray

    from jobs.predict import run
    from processes import engine_actors, kill_one_engine_actor_mid_run
    from reasonguard.config.predict import PredictConfig

    items = 32

    def config(out):
        return PredictConfig.model_validate({
            "engine": {**ENGINE, "model": tiny_model_dir}, "data": [{"dataset": "demo", "limit": items}],
            "modes": ["no_think"], "sampling": {"temperature": 0}, "max_tokens_by_mode": {"no_think": 16},
            "output_dir": str(out), "ray": {**RAY, "num_cpus": 4}, "pipeline": {**PIPELINE, "concurrency": 2}})

    from pipelines.ray_utils import init_ray

    ray.shutdown()  # two engine actors of one CPU each need a Ray of 4 (the map tasks take the rest)
    init_ray(None, 4, RAY["wait_for_min_actors_s"])  # in this thread, before the run's thread
    try:
        victim, written_before = kill_one_engine_actor_mid_run(lambda: run(config(tmp_path / "killed")),
                                                               tmp_path / "killed" / "predictions")
        restarted = [a for a in engine_actors() if a["ActorID"] == victim["ActorID"]]
        assert restarted and restarted[0]["NumRestarts"] >= 1, restarted
        assert written_before < items, "the kill must land mid-run"
        run(config(tmp_path / "whole"))
    finally:
        ray.shutdown()
    killed, whole = (read_parts(tmp_path / run_dir / "predictions.parquet") for run_dir in ("killed", "whole"))
    assert Counter(r["item_id"] for r in killed) == Counter(r["item_id"] for r in whole) == Counter(
        {r["item_id"]: 1 for r in whole})
    assert len(whole) == items
    by_id = {r["item_id"]: r["raw_output"] for r in whole}
    assert {r["item_id"]: r["raw_output"] for r in killed} == by_id  # greedy: the retried batch answers the same
