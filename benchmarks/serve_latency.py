"""Guard latency and throughput behind Ray Serve, against the engine called directly.

    python benchmarks/serve_latency.py                     # tiny format-trained guard on CPU (minutes)
    python benchmarks/serve_latency.py --model smollm2 --requests 16
    python benchmarks/serve_latency.py --model /path/to/guard --gpus 1 --requests 256   # on a GPU node

Measures, for `no_think`, `think` and score-only requests at concurrency 1, 8 and 32, p50/p99
latency and throughput of: the same engine and guard logic in-process ("direct": batches of
`concurrency` conversations per engine call, the best batching can do), and Serve (HTTP through
the proxy to one replica) with vLLM's AsyncLLM (continuous batching, the default engine_mode for
vLLM), with the synchronous engine behind queue batching or `@serve.batch`, and with batching off. Serve's overhead is Serve/direct at equal concurrency.
Prints a markdown table and writes the numbers as JSON (--json).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import percentile  # noqa: E402 - after the path set-up, for `python benchmarks/serve_latency.py`

KINDS = {
    "no_think": {"mode": "no_think"},
    "think": {"mode": "think"},
    "score_only": {"score_only": True},
}


def summarize(latencies: list[float], wall_s: float) -> dict:
    return {
        "n": len(latencies),
        "p50_ms": round(1000 * percentile(latencies, 0.5), 1),
        "p99_ms": round(1000 * percentile(latencies, 0.99), 1),
        "mean_ms": round(1000 * statistics.fmean(latencies), 1),
        "throughput_rps": round(len(latencies) / wall_s, 2),
    }


def prompts(n: int) -> list[str]:
    from reasonguard.datasets import load_demo

    texts = [e.prompt for e in load_demo()]
    return [texts[i % len(texts)] for i in range(n)]


def machine() -> dict:
    import ray
    import torch

    try:
        import vllm

        vllm_version = vllm.__version__
    except Exception:  # noqa: BLE001
        vllm_version = None
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), platform.processor())
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "cores": os.cpu_count(), "mem_gib": round(mem_gib, 1), "gpu": gpu, "python": platform.python_version(),
            "ray": ray.__version__, "vllm": vllm_version, "torch": torch.__version__}


# ------------------------------------------------------------------ direct engine


def bench_direct(config, kinds, concurrencies, n) -> dict:
    from reasonguard.engines import build_engine
    from serve.app import token_counter
    from serve.engine_runner import raise_first_error
    from serve.guard import GuardServer
    from serve.schemas import GuardRequest

    engine = build_engine(config.engine)
    server = GuardServer(engine, config, count_tokens=token_counter(config))
    out: dict = {}
    try:
        for kind in kinds:
            server.guard(GuardRequest(prompt="warm-up", **KINDS[kind]))
            for c in concurrencies:
                texts = prompts(n)
                latencies, start = [], time.perf_counter()
                for i in range(0, n, c):
                    # What a replica does per request (render, count tokens, generate, parse, score), with
                    # the best batching possible: c conversations in one engine call.
                    t = time.perf_counter()
                    plans = [server.plan_guard(GuardRequest(prompt=p, **KINDS[kind])) for p in texts[i : i + c]]
                    outputs = raise_first_error(server.generate([p.jobs[0] for p in plans]))
                    for plan, output in zip(plans, outputs):
                        server.finish_guard(plan, [output], 0.0)
                    latencies += [time.perf_counter() - t] * len(plans)
                out[f"{kind}@{c}"] = summarize(latencies, time.perf_counter() - start)
                print(f"direct    {kind:10s} c={c:<3d} {out[f'{kind}@{c}']}", flush=True)
    finally:
        server.close()
    return out


# ------------------------------------------------------------------ through Serve


async def _http_load(url: str, bodies: list[dict], concurrency: int) -> tuple[list[float], float, int]:
    import httpx

    sem = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    failures = 0

    async def one(client, body):
        nonlocal failures
        async with sem:
            t = time.perf_counter()
            r = await client.post("/v1/guard", json=body)
            if r.status_code != 200:
                failures += 1
            latencies.append(time.perf_counter() - t)

    limits = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=concurrency + 4)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
        start = time.perf_counter()
        await asyncio.gather(*(one(client, b) for b in bodies))
        return latencies, time.perf_counter() - start, failures


def bench_serve(url: str, kinds, concurrencies, n, label: str) -> dict:
    out: dict = {}
    for kind in kinds:
        asyncio.run(_http_load(url, [{"prompt": "warm-up", **KINDS[kind]}] * 2, 2))
        for c in concurrencies:
            bodies = [{"prompt": p, **KINDS[kind]} for p in prompts(n)]
            latencies, wall, failures = asyncio.run(_http_load(url, bodies, c))
            out[f"{kind}@{c}"] = {**summarize(latencies, wall), "failures": failures}
            print(f"{label:9s} {kind:10s} c={c:<3d} {out[f'{kind}@{c}']}", flush=True)
    return out


STRATEGIES = {  # label -> ServeConfig overrides
    "async": {"engine_mode": "async"},
    "queue": {"engine_mode": "batch", "batching": {"enabled": True, "strategy": "queue", "max_batch_size": 32, "batch_wait_timeout_s": 0.0}},
    "serve.batch": {"engine_mode": "batch", "batching": {"enabled": True, "strategy": "serve", "max_batch_size": 32, "batch_wait_timeout_s": 0.01}},
    "off": {"engine_mode": "batch", "batching": {"enabled": False}},
}


def serve_config(model: str, gpus: float, variant: dict, port: int, max_model_len: int):
    from reasonguard.config.serve import ServeConfig

    return ServeConfig.model_validate({
        "engine": {"kind": "vllm", "model": model, "max_model_len": max_model_len},
        "replica": {"num_replicas": 1, "num_cpus": 1 if gpus == 0 else 2, "num_gpus": gpus, "max_ongoing_requests": 64,
                    "env_vars": {"VLLM_CPU_KVCACHE_SPACE": "1"}},
        "limits": {"max_pending_items": 256},
        "timeouts": {"request_s": 600, "max_request_s": 600},
        "auth": {"token_env": None},
        "guard": {"temperature": 0.0},
        "http": {"host": "127.0.0.1", "port": port},
        **variant,
    })


def table(results: dict, kinds, concurrencies) -> str:
    labels = ["direct", *results["serve"]]
    head = "| kind | c | " + " | ".join(f"{label} p50 / p99 ms | {label} req/s" for label in labels) + " | async / direct p50 |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for kind in kinds:
        for c in concurrencies:
            key = f"{kind}@{c}"
            cells = []
            for label in labels:
                r = results["direct"].get(key) if label == "direct" else results["serve"][label].get(key)
                cells += [f"{r['p50_ms']:.0f} / {r['p99_ms']:.0f}", f"{r['throughput_rps']:.2f}"] if r else ["-", "-"]
            d, q = results["direct"].get(key), results["serve"].get("async", {}).get(key)
            ratio = f"{q['p50_ms'] / d['p50_ms']:.2f}x" if d and q else "-"
            lines.append(f"| {kind} | {c} | " + " | ".join(cells) + f" | {ratio} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny-guard", help="'tiny-guard' (format-trained tiny model), 'smollm2', a path or hub id")
    parser.add_argument("--requests", type=int, default=64, help="requests per (kind, concurrency) cell")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=list(STRATEGIES),
                        help="Serve variants: queue batching (default config), @serve.batch, AsyncLLM, no batching")
    parser.add_argument("--other-kinds", nargs="+", default=["no_think", "think"], help="kinds measured with the non-default variants")
    parser.add_argument("--gpus", type=float, default=0)
    parser.add_argument("--max-model-len", type=int, default=2048)
    parser.add_argument("--json", default="outputs/benchmarks/serve_latency.json")
    args = parser.parse_args(argv)
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    model = args.model
    if model == "tiny-guard":
        from serve.testing import build_tiny_guard

        model = str(build_tiny_guard())
    port = 0  # Serve's proxy binds a free port; jobs.serve.start reads it back

    results: dict = {"machine": machine(), "model": args.model, "requests_per_cell": args.requests, "serve": {}}
    results["direct"] = bench_direct(serve_config(model, args.gpus, STRATEGIES["off"], port, args.max_model_len),
                                     args.kinds, args.concurrency, args.requests)

    import ray
    from ray import serve

    from jobs.serve import start

    ray.init(num_cpus=max(2, os.cpu_count() or 2), include_dashboard=False)
    try:
        for label in args.strategies:
            url = start(serve_config(model, args.gpus, STRATEGIES[label], port, args.max_model_len))
            kinds = args.kinds if label in ("async", "queue") else [k for k in args.kinds if k in args.other_kinds]
            results["serve"][label] = bench_serve(url, kinds, args.concurrency, args.requests, label)
    finally:
        serve.shutdown()
        ray.shutdown()
    print()
    print(json.dumps(results["machine"]))
    print(table(results, args.kinds, args.concurrency))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2))
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
