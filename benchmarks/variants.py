"""What the harness measures: one function per process kind, each returning one record per variant.

Every process starts cold (its own engine, Ray, or trainer), reports its start-up separately,
runs a warm-up that is not counted, then runs its variants in the order the harness gives
(rotated per repetition). Numbers are measured, not asserted; `benchmarks.harness` summarises them.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any, Callable, Sequence

from benchmarks.harness import CpuMeter, completion_phases, inner_order, latency_summary

SAMPLED = {"temperature": 0.6, "top_p": 0.95}  # the paper's (and predict's) sampling


def workload(n: int, offset: int = 0):
    """`n` guard items from the embedded demo set, cycled; a cycle after the first starts its prompt
    with a marker, so no two prompts are equal and only the policy and instructions are a shared prefix."""
    import dataclasses

    from reasonguard.datasets import load_demo

    base = load_demo()
    out = []
    for i in range(offset, offset + n):
        ex, cycle = base[i % len(base)], i // len(base)
        out.append(ex if cycle == 0 else dataclasses.replace(ex, id=f"{ex.id}#{cycle}", prompt=f"({cycle}) {ex.prompt}"))
    return out


class FinishTimes:
    """A tqdm stand-in for vLLM's `use_tqdm`: records when each request finishes."""

    times: list[float] = []

    def __init__(self, iterable=None, *args, **kwargs):
        self.iterable = iterable  # vLLM also wraps its rendering loop in `use_tqdm`
        self.n = 0
        self.postfix = ""
        self.format_dict = {"elapsed": 1e-9}

    def update(self, k: int = 1) -> None:
        now = time.perf_counter()
        FinishTimes.times += [now] * k
        self.n += k

    def __iter__(self):
        return iter(self.iterable or ())

    def refresh(self) -> None: ...

    def close(self) -> None: ...


def _tokens_rates(rec: dict, seconds: float) -> dict:
    tok = rec["tokens"]
    return {"prompt_tokens_per_s": tok["prompt"] / seconds if seconds else None,
            "output_tokens_per_s": tok["output"] / seconds if seconds else None}


# ------------------------------------------------------------------ vLLM offline (one LLM, several variants)


OFFLINE_SPECS: dict[str, dict] = {
    # mode, constrained, sampling; `fixed` = greedy, exactly that many tokens (ignore_eos)
    "no_think": {"mode": "no_think", "constrained": True, "sampling": {**SAMPLED, "max_tokens": 24}},
    "no_think_free": {"mode": "no_think", "constrained": False, "sampling": {**SAMPLED, "max_tokens": 24}},
    "score": {"mode": "no_think", "constrained": True, "sampling": {"temperature": 0.0, "max_tokens": 24}},
    "think": {"mode": "think", "constrained": True, "sampling": {**SAMPLED, "max_tokens": 128}},
    "prefill": {"mode": "no_think", "constrained": False, "fixed": 1},
    "fixed32": {"mode": "no_think", "constrained": False, "fixed": 32},
}


def vllm_offline(variants: Sequence[str], params: dict, rep: int) -> list[dict]:
    """One `vllm.LLM` (VLLMEngine, pinned settings); variants `<prefix>.<spec>` of OFFLINE_SPECS, each
    on a cold prefix cache (reset before it), timed per request through vLLM's progress hook."""
    from reasonguard.engines.vllm_engine import VLLMEngine
    from reasonguard.models import resolve_model

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    model = resolve_model(params.get("model", "smollm2"))
    settings = {"max_model_len": 2048, **params.get("engine", {})}
    with CpuMeter() as meter:
        start = time.perf_counter()
        engine = VLLMEngine(model, **settings)
        startup = time.perf_counter() - start
    try:
        resolved = resolved_vllm_settings(engine._llm)
        _offline_run(engine, workload(8, offset=1000), OFFLINE_SPECS["no_think"])  # warm-up, not counted
        out = []
        for name in inner_order(variants, rep):
            spec = OFFLINE_SPECS[name.split(".", 1)[1]]
            items = params.get("items_by_spec", {}).get(name.split(".", 1)[1], params.get("items", 256))
            engine._llm.reset_prefix_cache()
            rec = _offline_run(engine, workload(items), spec)
            out.append({"variant": name, "startup_s": startup, "startup_cpu_s": meter.cpu_s, "engine_settings": resolved, **rec})
        return out
    finally:
        engine.close()


def _offline_run(engine, examples, spec: dict) -> dict:
    from vllm import SamplingParams

    from reasonguard.engines.base import SamplingConfig
    from reasonguard.predict import to_request, verdict_spec
    from reasonguard.verdict import parse_verdict

    requests = [list(to_request(ex, spec["mode"])) for ex in examples]
    if "fixed" in spec:
        params = [SamplingParams(temperature=0.0, max_tokens=spec["fixed"], min_tokens=spec["fixed"], ignore_eos=True)] * len(requests)
    else:
        sampling = SamplingConfig(**spec["sampling"])
        verdicts = [verdict_spec(ex, spec["mode"]) if spec["constrained"] else None for ex in examples]
        params = [engine.sampling_params(sampling, v) for v in verdicts]
    FinishTimes.times = []
    with CpuMeter() as meter:
        start = time.perf_counter()
        outs = engine._llm.chat(requests, params, use_tqdm=FinishTimes)
        end = time.perf_counter()
    texts = [o.outputs[0].text for o in outs]
    tokens = {"prompt": sum(len(o.prompt_token_ids or ()) for o in outs), "output": sum(len(o.outputs[0].token_ids) for o in outs),
              "cached": sum(o.num_cached_tokens or 0 for o in outs)}
    rec: dict[str, Any] = {"tokens": tokens, "cache_hit_rate": tokens["cached"] / tokens["prompt"] if tokens["prompt"] else None,
                           "cpu_s": meter.cpu_s, "cpu_s_per_item": meter.cpu_s / len(outs) if meter.cpu_s else None,
                           **completion_phases(start, FinishTimes.times or [end] * len(outs))}
    if "fixed" not in spec:
        rec["parsed_rate"] = sum(parse_verdict(t, expect_response=ex.response is not None).parsed_ok
                                 for t, ex in zip(texts, examples)) / len(texts)
    rec.update(_tokens_rates(rec, end - start))
    rec["output_tokens_per_item"] = tokens["output"] / len(outs)
    return rec


def resolved_vllm_settings(llm) -> dict:
    """The scheduler and cache settings the engine actually runs with (after vLLM's own defaults)."""
    cfg = llm.llm_engine.vllm_config
    return {"max_num_seqs": cfg.scheduler_config.max_num_seqs, "max_num_batched_tokens": cfg.scheduler_config.max_num_batched_tokens,
            "block_size": cfg.cache_config.block_size, "enable_prefix_caching": cfg.cache_config.enable_prefix_caching,
            "dtype": str(cfg.model_config.dtype), "max_model_len": cfg.model_config.max_model_len,
            "enforce_eager": cfg.model_config.enforce_eager}


# ------------------------------------------------------------------ Ray Data + vLLM (the predict pipeline)


def pipeline(variants: Sequence[str], params: dict, rep: int) -> list[dict]:
    """The predict pipeline (pipelines.predict.PredictionStream: Ray Data + ray.data.llm vLLM actors,
    the same pinned engine settings), rows timed as they reach the driver. Start-up = time from
    nothing (Ray not started) to the first row, less that row's own engine time."""
    from pipelines.predict import PredictionStream
    from pipelines.ray_utils import init_ray
    from reasonguard.config.common import PipelineSettings
    from reasonguard.engines import EngineConfig
    from reasonguard.engines.base import SamplingConfig
    from reasonguard.predict import expand_items

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    (name,) = variants
    spec = OFFLINE_SPECS[params.get("spec", "no_think")]
    items = workload(params.get("items", 256))
    work = expand_items(items, "bench", [spec["mode"]], 1, set())
    engine = EngineConfig(kind="vllm", model=params.get("model", "smollm2"), max_model_len=2048, **params.get("engine", {}))
    settings = PipelineSettings(batch_size=params.get("batch_size", 16), concurrency=params.get("concurrency", 1),
                                gpus_per_replica=params.get("gpus_per_replica", 0))
    import ray

    times, first_llm_s, rows = [], None, []
    with CpuMeter() as meter:
        start = time.perf_counter()
        init_ray(num_cpus=params.get("ray_cpus"))
        stream = PredictionStream(work, engine_config=engine, sampling_by_mode={spec["mode"]: SamplingConfig(**spec["sampling"])},
                                  pipeline=settings)
        for row in stream:
            times.append(time.perf_counter())
            if first_llm_s is None:
                first_llm_s = float(row.get("time_taken_llm") or row.get("latency_s") or 0.0)
            rows.append(row)
        end = time.perf_counter()
    ray.shutdown()
    phases = completion_phases(start, times, work_start=times[0] - (first_llm_s or 0.0)) if times else {"items": 0}
    failed = sum(1 for r in rows if r.get("__inference_error__") or str(r.get("parse_error") or "").startswith("inference error"))
    tokens = {"prompt": sum(int(r.get("prompt_tokens") or 0) for r in rows), "output": sum(int(r.get("output_tokens") or 0) for r in rows)}
    rec = {"variant": name, **phases, "startup_s": phases.get("ttfr_s", 0.0) - (first_llm_s or 0.0), "tokens": tokens, "failed_rows": failed,
           "parsed_rate": sum(1 for r in rows if r.get("parsed_ok")) / max(1, len(rows)), "cpu_s": meter.cpu_s,
           "cpu_s_per_item": meter.cpu_s / len(rows) if meter.cpu_s and rows else None,
           "params": {"batch_size": settings.batch_size, "concurrency": settings.concurrency, "items": len(items)}}
    rec.update(_tokens_rates(rec, end - start))
    return [rec]


# ------------------------------------------------------------------ transformers, one item at a time


def transformers_loop(variants: Sequence[str], params: dict, rep: int) -> list[dict]:
    """Per-item `generate` (batch 1, greedy, exactly `fixed` new tokens): the baseline vLLM's
    batching is compared with at equal output length."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from reasonguard.models import resolve_model
    from reasonguard.predict import to_request

    model_path = resolve_model(params.get("model", "smollm2"))
    fixed = params.get("fixed", 32)
    torch.set_num_threads(os.cpu_count() or 1)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with CpuMeter() as meter:
        start = time.perf_counter()
        tokenizer = AutoTokenizer.from_pretrained(model_path)
        model = AutoModelForCausalLM.from_pretrained(
            model_path, dtype=torch.bfloat16 if device == "cuda" else torch.float32).to(device).eval()
        startup = time.perf_counter() - start

    def one(ex) -> tuple[int, int]:
        ids = tokenizer.apply_chat_template(to_request(ex, "no_think"), add_generation_prompt=True, return_tensors="pt", return_dict=True)
        ids = {k: v.to(device) for k, v in ids.items()}
        with torch.inference_mode():
            out = model.generate(**ids, max_new_tokens=fixed, min_new_tokens=fixed, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
        return ids["input_ids"].shape[1], out.shape[1] - ids["input_ids"].shape[1]

    one(workload(1, offset=1000)[0])  # warm-up
    out = []
    for name in inner_order(variants, rep):
        examples = workload(params.get("items", 16))
        times, prompt, output = [], 0, 0
        with CpuMeter() as run_meter:
            t0 = time.perf_counter()
            for ex in examples:
                p, o = one(ex)
                prompt, output = prompt + p, output + o
                times.append(time.perf_counter())
            end = time.perf_counter()
        rec = {"variant": name, "startup_s": startup, "startup_cpu_s": meter.cpu_s, **completion_phases(t0, times),
               "tokens": {"prompt": prompt, "output": output}, "output_tokens_per_item": output / len(examples),
               "cpu_s": run_meter.cpu_s, "cpu_s_per_item": run_meter.cpu_s / len(examples) if run_meter.cpu_s else None}
        rec.update(_tokens_rates(rec, end - t0))
        out.append(rec)
    return out


# ------------------------------------------------------------------ guard requests: Serve vs in-process AsyncLLM


def _guard_config(model: str, port: int = 0, gpus: float = 0):
    """The guard as benchmarks/serve_latency.py serves it, on vLLM's AsyncLLM (the default for vLLM)."""
    from benchmarks.serve_latency import serve_config

    return serve_config(model, gpus, {"engine_mode": "async"}, port, max_model_len=2048)


def _closed_loop(send: Callable[[dict], Any], bodies: list[dict], concurrency: int) -> tuple[list[float], float, int]:
    """`concurrency` requests kept in flight until `bodies` are done; (latencies s, wall s, failures)."""
    async def main():
        sem = asyncio.Semaphore(concurrency)
        latencies, failures = [], 0

        async def one(body):
            nonlocal failures
            async with sem:
                t = time.perf_counter()
                ok = await send(body)
                latencies.append(time.perf_counter() - t)
                failures += 0 if ok else 1

        start = time.perf_counter()
        await asyncio.gather(*(one(b) for b in bodies))
        return latencies, time.perf_counter() - start, failures

    return asyncio.get_event_loop().run_until_complete(main())


def _request_bodies(n: int) -> list[dict]:
    return [{"prompt": ex.prompt, "mode": "no_think"} for ex in workload(n)]


def _concurrency_runs(variants, params, rep, make_send) -> list[dict]:
    out = []
    for name in inner_order(variants, rep):
        c = int(name.rsplit("@c", 1)[1])
        n = params.get("requests_per_c", {}).get(str(c), params.get("requests", 64))
        send = make_send()
        _closed_loop(send, _request_bodies(4), min(c, 4))  # warm-up, not counted
        with CpuMeter() as meter:
            latencies, wall, failures = _closed_loop(send, _request_bodies(n), c)
        out.append({"variant": name, "concurrency": c, "requests": n, "failures": failures, "latency": latency_summary(latencies),
                    "latencies_ms": [round(1000 * x, 2) for x in latencies], "requests_per_s": n / wall, "wall_s": wall,
                    "cpu_s": meter.cpu_s, "cpu_ms_per_request": 1000 * meter.cpu_s / n if meter.cpu_s else None})
    return out


def asyncllm(variants: Sequence[str], params: dict, rep: int) -> list[dict]:
    """The guard in-process: AsyncVLLMEngine + the replica's guard logic (render, count, generate,
    parse, score), no HTTP and no Serve. Variants `asyncllm@c<k>`."""
    from reasonguard.engines.async_vllm import AsyncVLLMEngine
    from reasonguard.models import resolve_model
    from serve.guard import GuardServer
    from serve.schemas import GuardRequest
    from serve.service import GuardService

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    model = resolve_model(params.get("model", "smollm2"))
    config = _guard_config(model)
    asyncio.set_event_loop(asyncio.new_event_loop())
    start = time.perf_counter()
    engine = AsyncVLLMEngine(model, max_model_len=2048)
    startup = time.perf_counter() - start
    service = GuardService(GuardServer(engine, config, count_tokens=engine.count_tokens), config)

    def make_send():
        async def send(body):
            result = await service.guard(GuardRequest(**body))
            return bool(result.parsed_ok)
        return send

    try:
        return [{**r, "startup_s": startup} for r in _concurrency_runs(variants, params, rep, make_send)]
    finally:
        engine.close()


def serve_http(variants: Sequence[str], params: dict, rep: int) -> list[dict]:
    """The same guard behind Ray Serve (HTTP proxy -> ingress -> AsyncLLM replica), closed-loop
    httpx clients on the same machine. Variants `serve@c<k>`."""
    import httpx
    import ray
    from ray import serve

    from jobs.serve import start as start_serve
    from reasonguard.models import resolve_model

    model = resolve_model(params.get("model", "smollm2"))
    asyncio.set_event_loop(asyncio.new_event_loop())
    t0 = time.perf_counter()
    ray.init(num_cpus=max(2, os.cpu_count() or 2), include_dashboard=False)
    try:
        url = start_serve(_guard_config(model, port=0, gpus=params.get("gpus", 0)))
        startup = time.perf_counter() - t0
        client = httpx.AsyncClient(base_url=url, timeout=600, limits=httpx.Limits(max_connections=80, max_keepalive_connections=80))

        def make_send():
            async def send(body):
                r = await client.post("/v1/guard", json=body)
                return r.status_code == 200 and bool(r.json().get("parsed_ok", True))
            return send

        return [{**r, "startup_s": startup} for r in _concurrency_runs(variants, params, rep, make_send)]
    finally:
        serve.shutdown()
        ray.shutdown()


# ------------------------------------------------------------------ training


def train(variants: Sequence[str], params: dict, rep: int) -> list[dict]:
    """benchmarks.train_throughput's variants (plain torch loop, Ray Train + DeepSpeed), timed steps
    after the first; the same rows, sequence length and global batch for each."""
    import argparse
    import tempfile
    from pathlib import Path

    from benchmarks.train_throughput import build_rows, n_params, run_variant
    from reasonguard.models import resolve_model
    from reasonguard.sft import write_rows

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = argparse.Namespace(steps=params.get("steps", 21), micro=params.get("micro", 1), accumulation=params.get("accumulation", 1),
                              workers=params.get("workers", 2), seq=params.get("seq", 256), packing=params.get("packing", False),
                              gpu=params.get("gpu", False), ray_cpus=params.get("ray_cpus"), zero_stage=params.get("zero_stage"))
    out_dir = Path(tempfile.mkdtemp(prefix="rg-bench-train-"))
    model = resolve_model(params.get("model", "smollm2"))
    global_batch = args.micro * args.accumulation * args.workers
    rows = build_rows(max(256, global_batch * (args.steps + 1) * 2), policy=params.get("policy"))
    sft_path = write_rows(rows, str(out_dir / "sft.parquet"))
    params_n, _ = n_params(model)
    out = []
    for name in inner_order(variants, rep):
        with CpuMeter() as meter:
            result = run_variant(name.split(".", 1)[1].replace("_", "-"), args, sft_path, model, out_dir)
        rec = {"variant": name, "steps_timed": result["steps_timed"], "tokens_per_s": result["tokens_per_s"],
               "timed_s": result["seconds"], "total_s": result["wall_s"], "startup_s": result["wall_s"] - result["seconds"],
               "final_loss": result["final_loss"], "cpu_s": meter.cpu_s, "model_params": params_n,
               "params": {"global_batch": global_batch, "seq": args.seq, "workers": args.workers}}
        if params.get("peak_tflops"):
            devices = args.workers if "ray" in name else 1
            rec["mfu"] = 6 * params_n * result["tokens_per_s"] / (params["peak_tflops"] * 1e12 * devices)
        out.append(rec)
    return out


KINDS: dict[str, Callable[[Sequence[str], dict, int], list[dict]]] = {
    "vllm_offline": vllm_offline, "pipeline": pipeline, "transformers_loop": transformers_loop,
    "asyncllm": asyncllm, "serve_http": serve_http, "train": train,
}

