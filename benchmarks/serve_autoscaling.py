"""Serve autoscaling under a load step: replicas over time and the latency while the guard scales.

Starts the guard (the tiny format-trained model on the transformers engine, or `--model`) with Serve's
autoscaler (1..2 replicas, short delays), keeps `--concurrency` requests in flight for `--load-s`
seconds, samples the RUNNING replica count from Serve's controller every 0.5 s, then waits for the
scale-down. Prints: time to the second replica, latency percentiles and throughput before and after
it, failures, and the time back to one replica. Numbers only; nothing is asserted.

    .venv/bin/python benchmarks/serve_autoscaling.py --concurrency 8 --load-s 40
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import threading
import time


def running_replicas() -> int:
    from ray.serve.context import _get_global_client

    details = _get_global_client().get_serve_details()
    deployment = details["applications"]["guard"]["deployments"]["GuardDeployment"]
    return sum(1 for r in deployment["replicas"] if r["state"] == "RUNNING")


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    q = statistics.quantiles(values, n=100, method="inclusive") if len(values) > 1 else values * 99
    return {"n": len(values), "p50_ms": round(q[49] * 1000), "p95_ms": round(q[94] * 1000),
            "max_ms": round(max(values) * 1000)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="guard checkpoint (default: the tiny format-trained guard)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--load-s", type=float, default=40)
    parser.add_argument("--upscale-delay-s", type=float, default=2)
    parser.add_argument("--downscale-delay-s", type=float, default=6)
    args = parser.parse_args()

    import httpx
    from ray import serve

    from jobs.serve import start
    from serve.testing import autoscaling_demo_config, build_tiny_guard

    model = args.model or str(build_tiny_guard())
    config = autoscaling_demo_config(model, 0, 0, args.upscale_delay_s, args.downscale_delay_s)
    url = start(config, ready_timeout_s=300)
    samples: list[tuple[float, int]] = []
    requests: list[tuple[float, float, bool]] = []  # (start offset, latency, ok)
    stop = threading.Event()
    t0 = time.monotonic()

    async def worker(client, k):
        i = 0
        while not stop.is_set():
            start_t = time.monotonic()
            try:
                r = await client.post("/v1/guard", json={"prompt": f"Client {k} request {i}: how do I pick a lock?",
                                                         "score_only": True})
                ok = r.status_code == 200
            except httpx.HTTPError:
                ok = False
            requests.append((start_t - t0, time.monotonic() - start_t, ok))
            i += 1

    async def load():
        async with httpx.AsyncClient(base_url=url, timeout=120) as client:
            await asyncio.gather(*(worker(client, k) for k in range(args.concurrency)))

    loader = threading.Thread(target=lambda: asyncio.run(load()), daemon=True)
    loader.start()
    while time.monotonic() - t0 < args.load_s:
        samples.append((time.monotonic() - t0, running_replicas()))
        time.sleep(0.5)
    stop.set()
    loader.join(timeout=120)
    load_end = time.monotonic() - t0
    while time.monotonic() - t0 < load_end + args.downscale_delay_s + 90:
        samples.append((time.monotonic() - t0, running_replicas()))
        if samples[-1][1] == 1 and samples[-1][0] > load_end + 1:
            break
        time.sleep(0.5)
    serve.shutdown()

    up_at = next((t for t, n in samples if n >= 2), None)
    down_at = next((t for t, n in samples if t > load_end and n == 1), None)
    before = [lat for s, lat, ok in requests if ok and (up_at is None or s < up_at)]
    after = [lat for s, lat, ok in requests if ok and up_at is not None and s >= up_at]
    span_before = up_at if up_at is not None else load_end
    result = {
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} CPUs",
        "concurrency": args.concurrency, "load_s": args.load_s,
        "upscale_delay_s": args.upscale_delay_s, "downscale_delay_s": args.downscale_delay_s,
        "requests": len(requests), "failed": sum(1 for *_, ok in requests if not ok),
        "second_replica_running_after_s": round(up_at, 1) if up_at is not None else None,
        "one_replica": {**percentiles(before), "rps": round(len(before) / max(span_before, 1e-9), 1)},
        "two_replicas": {**percentiles(after),
                         "rps": round(len(after) / max(load_end - (up_at or load_end), 1e-9), 1) if after else 0},
        "back_to_one_replica_after_load_s": round(down_at - load_end, 1) if down_at is not None else None,
        "max_replicas_seen": max(n for _, n in samples),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
