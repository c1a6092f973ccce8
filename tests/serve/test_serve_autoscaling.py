"""Serve's autoscaler on the guard, exercised: under a bounded loopback load the guard deployment
grows from one replica to two, every request is answered, and after the load stops it shrinks back
to one. Replica counts are read from Serve's own status (the controller's application details).

The guard is the tiny format-trained model on the transformers engine (a real model; vLLM replicas
would take a minute each to start on 2 cores). Short autoscaler delays keep the test within a minute
or two; production values are in cluster/configs/serve_gpu.yaml. Latency during the scale-up is
measured by benchmarks/serve_autoscaling.py, not asserted here.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]

AUTOSCALING = {"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 2, "upscale_delay_s": 2,
               "downscale_delay_s": 6, "metrics_interval_s": 0.5, "look_back_period_s": 2}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def autoscaling_config(model_dir: str, autoscaling: dict = AUTOSCALING):
    from reasonguard.config.serve import ServeConfig

    return ServeConfig.model_validate({
        "engine": {"kind": "transformers", "model": model_dir, "device": "cpu", "batch_size": 4},
        "served_model_name": "tiny-guard",
        "autoscaling": autoscaling,
        "replica": {"num_cpus": 0.5, "max_ongoing_requests": 8, "health_check_period_s": 2,
                    "graceful_shutdown_timeout_s": 2},
        "ingress": {"num_replicas": 1, "num_cpus": 0.1},
        "batching": {"enabled": True, "max_batch_size": 4, "batch_wait_timeout_s": 0.01},
        "guard": {"temperature": 0.0},
        "http": {"host": "127.0.0.1", "port": _free_port()},
        "operations": {"metrics_export_port": _free_port(), "dashboard": False},
        "ray": {"num_cpus": 2},
    })


def running_replicas() -> int:
    """RUNNING replicas of the guard deployment, as Serve's controller reports them."""
    from ray.serve.context import _get_global_client

    details = _get_global_client().get_serve_details()
    deployment = details["applications"]["guard"]["deployments"]["GuardDeployment"]
    return sum(1 for r in deployment["replicas"] if r["state"] == "RUNNING")


def load_until(url: str, stop: threading.Event, concurrency: int, results: list) -> None:
    """Keep `concurrency` guard requests in flight until `stop`; (status, latency_s) per request."""
    import httpx

    async def worker(client, k):
        i = 0
        while not stop.is_set():
            start = time.monotonic()
            try:
                r = await client.post("/v1/guard", json={"prompt": f"Client {k} request {i}: how do I pick a lock?",
                                                         "score_only": True})
                ok = r.status_code == 200 and r.json()["prompt_harm"] in ("harmful", "unharmful")
                results.append((r.status_code if ok else -r.status_code, time.monotonic() - start))
            except httpx.HTTPError:
                results.append((-1, time.monotonic() - start))
            i += 1

    async def main():
        async with httpx.AsyncClient(base_url=url, timeout=120) as client:
            await asyncio.gather(*(worker(client, k) for k in range(concurrency)))

    asyncio.run(main())


def test_guard_scales_up_under_load_and_back_down():
    import ray
    from ray import serve

    from jobs.serve import start
    from serve.testing import build_tiny_guard

    config = autoscaling_config(str(build_tiny_guard()))
    url = start(config, ready_timeout_s=300)
    try:
        assert running_replicas() == 1
        stop, results = threading.Event(), []
        loader = threading.Thread(target=load_until, args=(url, stop, 8, results), daemon=True)
        loader.start()
        peak, deadline = 1, time.monotonic() + 120
        while time.monotonic() < deadline and peak < 2:
            time.sleep(0.5)
            peak = max(peak, running_replicas())
        # keep the load on a little longer with both replicas serving, then stop it
        time.sleep(3)
        stop.set()
        loader.join(timeout=120)
        assert peak == 2, f"never scaled up: {len(results)} requests answered"
        failures = [status for status, _ in results if status != 200]
        assert results and not failures, f"{len(failures)} of {len(results)} requests failed: {set(failures)}"

        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and running_replicas() > 1:
            time.sleep(1)
        assert running_replicas() == 1, "did not scale back down after the load stopped"
    finally:
        serve.shutdown()
        ray.shutdown()
