"""Serve's autoscaler on the guard, exercised: under a bounded loopback load the guard deployment
grows from one replica to two, every request is answered, and after the load stops it shrinks back
to one. Replica counts are read from Serve's own status (the controller's application details).
Also the moderating proxy's stream through Serve's proxy and the ingress (one replica), and
`serve status` against that app's dashboard.

The guard is the tiny format-trained model on the transformers engine (a real model; vLLM replicas
would take a minute each to start on 2 cores). Short autoscaler delays keep the test within a minute
or two; production values are in cluster/configs/serve_gpu.yaml. Latency during the scale-up is
measured by benchmarks/serve_autoscaling.py, not asserted here.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]

def autoscaling_config(model_dir: str):
    from serve.testing import autoscaling_demo_config

    return autoscaling_demo_config(model_dir, 0, 0)  # the proxy and Ray bind free ports and report them


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


def engine_calls_with_more_than_one(url: str) -> float:
    """From the app's Prometheus text: engine calls (batches) of more than one conversation."""
    import re

    import httpx

    text = httpx.get(f"{url}/metrics", timeout=30).text
    count = single = 0.0
    for line in text.splitlines():
        if line.startswith("ray_reasonguard_engine_batch_size_count"):
            count += float(line.rsplit(" ", 1)[1])
        elif line.startswith("ray_reasonguard_engine_batch_size_bucket"):
            le = re.search(r'le="([^"]+)"', line)
            if le and le.group(1) != "+Inf" and float(le.group(1)) == 1.0:
                single += float(line.rsplit(" ", 1)[1])
    return count - single


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
        # The replicas batched through @serve.batch (the demo config's strategy): some engine calls held
        # several requests' conversations (Ray exports the histogram every few seconds).
        batched, deadline = None, time.monotonic() + 60
        while time.monotonic() < deadline and not batched:
            batched = engine_calls_with_more_than_one(url)
            time.sleep(2)
        assert batched, "no engine call held more than one conversation"
    finally:
        serve.shutdown()
        ray.shutdown()


def test_moderating_proxy_streams_through_serve_and_a_client_leaving_closes_the_upstream():
    """The moderating proxy on a real Serve (ingress -> guard replica through a handle): the openai SDK's
    streaming client gets the upstream's text chunk by chunk after the checks; a client that goes away
    mid-stream closes the upstream request (through Serve's proxy and the ingress)."""
    from openai import OpenAI
    from ray import serve
    import ray
    import httpx
    from scripted_upstream import BENIGN, ScriptedUpstream, serve_app

    from jobs.serve import start
    from reasonguard.config.serve import ServeConfig
    from serve.testing import build_tiny_guard

    upstream = ScriptedUpstream()
    up_url, up_server, up_thread = serve_app(upstream.app)
    payload = autoscaling_config(str(build_tiny_guard())).model_dump(mode="json", exclude_unset=True)
    payload.pop("autoscaling")
    payload["replica"]["num_replicas"] = 1
    # threshold 1.0: the tiny guard's verdicts are near chance, so nothing is cut here; the cut itself is
    # tested with a scripted guard in tests/serve/test_moderation.py
    payload["moderation"] = {"upstream": {"base_url": f"{up_url}/v1", "model": "upstream-llm"},
                             "check_every_tokens": 8, "threshold": 1.0}
    # and the dashboard on loopback, so an operator's `serve status` works (Ray moves off a taken port:
    # the address is read back from Ray)
    payload["operations"].update({"dashboard": True})
    url = start(ServeConfig.model_validate(payload), ready_timeout_s=300)
    try:
        from jobs.serve import dashboard_url

        status = subprocess.run([sys.executable, "-m", "ray.serve.scripts", "status", "--address",
                                 dashboard_url()], capture_output=True, text=True, timeout=120,
                                env={**os.environ, "RAY_AUTH_MODE": "token"})
        assert status.returncode == 0, status.stderr[-2000:]
        assert "GuardDeployment" in status.stdout and "RUNNING" in status.stdout, status.stdout
        client = OpenAI(base_url=f"{url}/v1", api_key="x")
        chunks = list(client.chat.completions.create(
            model="upstream-llm", messages=[{"role": "user", "content": "How do I bake bread?"}], stream=True))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == " ".join(BENIGN.split(" ")) + " "
        assert chunks[-1].choices[0].finish_reason == "stop" and chunks[-1].to_dict()["moderation"]["checks"] >= 4
        assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) >= 4  # streamed, not one block

        upstream.text, upstream.delay_s = " ".join(["word"] * 400), 0.02
        body = {"model": "upstream-llm", "stream": True, "messages": [{"role": "user", "content": "Say words."}]}
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=60) as r:
            assert r.status_code == 200
            for n, _ in enumerate(r.iter_lines()):
                if n >= 6:
                    break
        deadline = time.monotonic() + 15
        while upstream.abandoned == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert upstream.abandoned == 1 and upstream.completed == 1
    finally:
        serve.shutdown()
        ray.shutdown()
        up_server.should_exit = True
        up_thread.join(10)
