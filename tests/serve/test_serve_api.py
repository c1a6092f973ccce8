"""The HTTP contract in-process (FastAPI TestClient, scripted engine): routes, OpenAPI, every error path."""

from __future__ import annotations

import json
import random
import threading
import time

import pytest
from conftest import ScriptedEngine, keyword_guard, make_config
from fastapi.testclient import TestClient

from serve.api import create_api
from serve.guard import GuardServer
from serve.service import GuardService


def client_for(engine=None, env_token=None, monkeypatch=None, **overrides) -> TestClient:
    if env_token is not None:
        monkeypatch.setenv("REASONGUARD_SERVE_TOKEN", env_token)
    elif monkeypatch is not None:
        monkeypatch.delenv("REASONGUARD_SERVE_TOKEN", raising=False)
    config = make_config(**overrides)
    service = GuardService(GuardServer(engine or ScriptedEngine(keyword_guard), config), config)
    return TestClient(create_api(service), raise_server_exceptions=False)


@pytest.fixture
def client(monkeypatch):
    return client_for(monkeypatch=monkeypatch)


def test_guard_single_and_batch(client):
    r = client.post("/v1/guard", json={"prompt": "How do I make a bomb?", "threshold": 0.5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "guard.result" and body["prompt_harm"] == "harmful" and body["flagged"] is True
    assert 0 <= body["score"] <= 1 and isinstance(body["latency_ms"], (int, float)) and body["latency_ms"] >= 0
    r = client.post("/v1/guard", json={"inputs": [{"prompt": "cake"}, {"prompt": "bomb", "response": "a detonator"}], "mode": "think"})
    assert r.status_code == 200, r.text
    batch = r.json()
    assert batch["object"] == "guard.batch" and batch["mode"] == "think"
    assert [x["prompt_harm"] for x in batch["results"]] == ["unharmful", "harmful"]
    assert batch["results"][1]["response_harm"] == "harmful"


def test_health_models_openapi(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["model"] == "scripted"
    models = client.get("/v1/models").json()
    assert models["object"] == "list" and models["data"][0]["id"] == "scripted"
    spec = client.get("/openapi.json").json()
    assert {"/v1/guard", "/v1/chat/completions", "/v1/models", "/healthz", "/readyz"} <= set(spec["paths"])
    body = spec["paths"]["/v1/guard"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert len(body["oneOf"]) == 2
    assert {"GuardRequest", "GuardBatchRequest", "Conversation", "GuardResponse", "ErrorResponse"} <= set(spec["components"]["schemas"])
    assert {"401", "413", "422", "503", "504"} <= set(spec["paths"]["/v1/guard"]["post"]["responses"])


def test_chat_completions(client):
    r = client.post("/v1/chat/completions", json={"model": "scripted", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "Human user:\nbomb\n\nAI assistant:\nNone\n\n/no_think"}]}],
        "temperature": 0, "presence_penalty": 0})  # an unknown OpenAI field is ignored
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"].startswith("Prompt harm: harmful")


@pytest.mark.parametrize(
    "body, param, fragment",
    [
        (b"{not json", "body", "not valid JSON"),
        (b"[1, 2]", "body", "JSON object"),
        (b'{"prompt": "x", "mode": "fast"}', "mode", "'think' or 'no_think'"),
        (b'{"prompt": 3}', "prompt", "string"),
        (b'{"prompt": "x", "treshold": 0.5}', "treshold", "Extra inputs"),
        (b'{"prompt": "x", "threshold": 1.5}', "threshold", "less than or equal to 1"),
        (b'{"prompt": "x", "messages": [{"role": "user", "content": "y"}]}', None, "either 'prompt'"),
        (b'{}', None, "either 'prompt'"),
        (b'{"messages": [{"role": "assistant", "content": "y"}]}', None, "at least one user turn"),
        (b'{"messages": [{"role": "robot", "content": "y"}]}', "messages[0].role", "Input should be"),
        (b'{"inputs": []}', "inputs", "at least 1 item"),
        (b'{"inputs": [{"prompt": "x", "mode": "think"}]}', "inputs[0].mode", "Extra inputs"),
        (b'{"prompt": "x", "policy": []}', "policy", "at least one category"),
        (b'{"prompt": "x", "policy": "   "}', "policy", "must not be empty"),
        (b'{"prompt": "x", "reasoning_budget": 0}', "reasoning_budget", "greater than or equal to 1"),
        (b'{"prompt": "x", "categories": "sometimes"}', "categories", "valid boolean"),
    ],
)
def test_422_names_the_field(client, body, param, fragment):
    r = client.post("/v1/guard", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["param"] == param and fragment in err["message"] and err["code"] == 422


def test_chat_422_and_404(client):
    r = client.post("/v1/chat/completions", json={"model": "scripted", "messages": [{"role": "user", "content": "x"}], "stream": True})
    assert r.status_code == 422 and r.json()["error"]["param"] == "stream"
    r = client.post("/v1/chat/completions", json={"model": "scripted", "messages": []})
    assert r.status_code == 422 and r.json()["error"]["param"] == "messages"
    r = client.post("/v1/chat/completions", json={"model": "other", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 404 and r.json()["error"]["type"] == "model_not_found"
    assert client.get("/v1/nothing").status_code == 404 and client.get("/v1/guard").status_code == 405


def test_413_names_the_limit(monkeypatch):
    c = client_for(monkeypatch=monkeypatch, limits__max_body_bytes=2048, limits__max_text_chars=100, limits__max_batch_items=2)
    r = c.post("/v1/guard", json={"prompt": "x" * 5000})
    assert r.status_code == 413 and "2048 bytes" in r.json()["error"]["message"]
    r = c.post("/v1/guard", json={"prompt": "x" * 101})
    assert r.status_code == 413 and r.json()["error"]["param"] == "prompt" and "limit is 100" in r.json()["error"]["message"]
    r = c.post("/v1/guard", json={"inputs": [{"prompt": "x"}] * 3})
    assert r.status_code == 413 and r.json()["error"]["param"] == "inputs"

    def chunked():
        yield b'{"prompt": "'
        for _ in range(10):
            yield b"y" * 500
        yield b'"}'

    r = c.post("/v1/guard", content=chunked(), headers={"content-type": "application/json"})  # no Content-Length
    assert r.status_code == 413


def test_401_when_a_token_is_configured(monkeypatch):
    c = client_for(env_token="s3cret", monkeypatch=monkeypatch)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}, {"Authorization": "Basic s3cret"}):
        r = c.post("/v1/guard", json={"prompt": "x"}, headers=headers)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", headers
        assert c.get("/v1/models", headers=headers).status_code == 401
    assert c.post("/v1/guard", json={"prompt": "x"}, headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert c.get("/healthz").status_code == 200  # probes need no token
    # Authentication comes before the body: a bad body without a token is 401 on every route, never 422.
    for path in ("/v1/guard", "/v1/chat/completions"):
        for raw in (b"{not json", b'{"messages": 3}', b"[]"):
            r = c.post(path, content=raw, headers={"content-type": "application/json"})
            assert r.status_code == 401 and r.json()["error"]["type"], (path, raw, r.text)
    chat = {"model": c.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).json()["data"][0]["id"],
            "messages": [{"role": "user", "content": "Human user:\nbomb\n\nAI assistant:\nNone\n\n/no_think"}]}
    assert c.post("/v1/chat/completions", json=chat, headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert c.post("/v1/chat/completions", json=chat).status_code == 401


def test_auth_required_without_token_fails_the_start(monkeypatch):
    monkeypatch.delenv("REASONGUARD_SERVE_TOKEN", raising=False)
    with pytest.raises(RuntimeError, match="REASONGUARD_SERVE_TOKEN"):
        client_for(auth__required=True)


def _in_thread(fn):
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", fn()))
    t.start()
    return t, out


def test_503_with_retry_after_when_over_capacity(monkeypatch):
    gate = threading.Event()
    engine = ScriptedEngine(keyword_guard, gate=gate)
    c = client_for(engine, monkeypatch=monkeypatch, limits__max_pending_items=3)
    t, first = _in_thread(lambda: c.post("/v1/guard", json={"inputs": [{"prompt": "a"}, {"prompt": "b"}]}))
    deadline = time.monotonic() + 10
    while not engine.calls and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        r = c.post("/v1/guard", json={"inputs": [{"prompt": "c"}, {"prompt": "d"}]})
        assert r.status_code == 503 and r.headers["retry-after"] == "2" and r.json()["error"]["type"] == "overloaded"
    finally:
        gate.set()
        t.join(30)
    assert first["r"].status_code == 200
    assert c.post("/v1/guard", json={"inputs": [{"prompt": "c"}, {"prompt": "d"}]}).status_code == 200  # capacity is back


def test_504_when_the_deadline_passes(monkeypatch):
    gate = threading.Event()
    # One portal for the whole test: a per-request portal would wait for the blocked engine thread on exit.
    with client_for(ScriptedEngine(keyword_guard, gate=gate), monkeypatch=monkeypatch) as c:
        try:
            r = c.post("/v1/guard", json={"prompt": "x", "timeout_s": 0.2})  # the engine is held for 30 s
            assert r.status_code == 504 and r.json()["error"]["param"] == "timeout_s"
        finally:
            gate.set()


def test_503_and_unready_when_the_engine_fails(monkeypatch):
    c = client_for(ScriptedEngine(keyword_guard, fail_with=RuntimeError("engine core died")), monkeypatch=monkeypatch)
    for _ in range(4):
        r = c.post("/v1/guard", json={"prompt": "x"})
        assert r.status_code == 503 and "retry-after" in r.headers
    assert c.get("/readyz").status_code == 503 and c.get("/healthz").status_code == 200


def _random_json(rng, depth=0):
    kinds = ["str", "int", "float", "bool", "null", "list", "dict"] if depth < 3 else ["str", "int", "null"]
    kind = rng.choice(kinds)
    if kind == "str":
        return rng.choice(["", "x", "think", "no_think", "user", "\u0000", "</think>", "Prompt harm: harmful", "a" * 300])
    if kind == "int":
        return rng.choice([0, -1, 1, 2**40, 400])
    if kind == "float":
        return rng.choice([0.5, -0.1, 1e308, 2.0])
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "null":
        return None
    if kind == "list":
        return [_random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    keys = ["prompt", "response", "messages", "inputs", "mode", "policy", "threshold", "reasoning_budget", "role", "content",
            "score_only", "timeout_s", "seed", "temperature", "id", "model", "n", "max_tokens", "stream"]
    return {rng.choice(keys): _random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def test_fuzzed_input_never_gives_500(client):
    rng = random.Random(1)
    statuses = set()
    for i in range(400):
        path = rng.choice(["/v1/guard", "/v1/chat/completions"])
        if i % 10 == 0:
            raw = bytes(rng.randrange(256) for _ in range(rng.randint(0, 40)))
        else:
            raw = json.dumps(_random_json(rng)).encode()
        r = client.post(path, content=raw, headers={"content-type": "application/json"})
        statuses.add(r.status_code)
        assert r.status_code in (200, 404, 413, 422), (path, raw, r.status_code, r.text)
        assert "error" in r.json() or r.status_code == 200
    assert 422 in statuses


@pytest.mark.parametrize("path", ["/v1/guard", "/v1/chat/completions"])
@pytest.mark.parametrize("raw", [
    b'{"prompt": "x", "policy": ' + b"[" * 1000 + b"]" * 1000 + b"}",     # 1000 nested lists
    b'{"prompt": "x", "seed": ' + b"9" * 5000 + b"}",                      # a 5000-digit integer
    b'{"messages": [{"role": "user", "content": "hi"}], "seed": -' + b"1" * 5000 + b"}",
    b'{"prompt": "x", "temperature": 1' + b"0" * 400 + b'.5e-999}',
    b"[" * 100000,                                                         # deep and unterminated
])
def test_deep_nesting_and_huge_numbers_are_422_not_500(client, path, raw):
    r = client.post(path, content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422, (r.status_code, r.text[:200])
    assert r.json()["error"]["param"] == "body" and ("nests deeper" in r.text or "number longer" in r.text)


def test_shape_limits_count_structure_not_string_content(client):
    text = "[[[[{" * 200 + "9" * 500  # brackets and digits inside a string are text
    r = client.post("/v1/guard", json={"prompt": text})
    assert r.status_code == 200, r.text


def test_queue_batcher_batches_what_arrives_while_busy():
    import asyncio

    from serve.service import QueueBatcher

    calls, release = [], None

    async def run_batch(jobs):
        calls.append(list(jobs))
        if jobs == ["boom"]:
            raise RuntimeError("engine failed")
        await release.wait()
        return [f"out-{j}" for j in jobs]

    async def main():
        nonlocal release
        release = asyncio.Event()
        batcher = QueueBatcher(run_batch, max_batch_size=4)
        first = asyncio.create_task(batcher.submit(0))
        await asyncio.sleep(0.01)  # the engine is now busy with [0]
        rest = [asyncio.create_task(batcher.submit(i)) for i in range(1, 7)]
        doomed = asyncio.create_task(batcher.submit(99))
        await asyncio.sleep(0.01)
        doomed.cancel()  # a deadline passed while queued: it never reaches the engine
        release.set()
        results = await asyncio.gather(first, *rest)
        with pytest.raises(RuntimeError, match="engine failed"):
            await batcher.submit("boom")
        assert await batcher.submit(7) == "out-7"  # the worker survived the failure
        return results

    results = asyncio.run(main())
    assert results == [f"out-{i}" for i in range(7)]
    assert calls == [[0], [1, 2, 3, 4], [5, 6], ["boom"], [7]]


def test_a_local_model_path_is_never_shown(monkeypatch, tmp_path):
    checkpoint = tmp_path / "secret-team" / "run7" / "final"
    checkpoint.mkdir(parents=True)
    c = client_for(monkeypatch=monkeypatch, engine__model=str(checkpoint))
    shown = [c.get("/readyz").json()["model"], c.get("/v1/models").json()["data"][0]["id"],
             c.post("/v1/guard", json={"prompt": "hi"}).json()["model"]]
    assert shown == ["run7-final"] * 3 and not any(str(tmp_path) in s for s in shown)
    chat = {"model": "run7-final", "messages": [{"role": "user", "content": "Human user:\nhi\n\nAI assistant:\nNone\n\n/no_think"}]}
    assert c.post("/v1/chat/completions", json=chat).status_code == 200


@pytest.mark.parametrize(("extra", "fragment"), [
    ({"logprobs": True}, "logprobs are not returned"), ({"top_logprobs": 5}, "top_logprobs are not returned"),
    ({"stream": True}, "streaming is not supported"),
])
def test_unsupported_openai_options_are_refused_not_ignored(client, extra, fragment):
    body = {"model": "scripted", "messages": [{"role": "user", "content": "Human user:\nhi\n\nAI assistant:\nNone\n\n/no_think"}]}
    r = client.post("/v1/chat/completions", json={**body, **extra})
    assert r.status_code == 422 and fragment in r.json()["error"]["message"] and r.json()["error"]["param"] == next(iter(extra))
    assert client.post("/v1/chat/completions", json={**body, "logprobs": False, "stream": False}).status_code == 200


def test_metrics_route_serves_the_exporter_text_or_a_json_503(monkeypatch):
    config = make_config()
    service = GuardService(GuardServer(ScriptedEngine(keyword_guard), config), config)

    async def exporter():
        return "# TYPE ray_reasonguard_requests counter\nray_reasonguard_requests 3\n"

    async def broken():
        raise ConnectionError("refused")

    ok = TestClient(create_api(service, metrics_source=exporter)).get("/metrics")
    assert ok.status_code == 200 and ok.text.endswith("ray_reasonguard_requests 3\n")
    assert ok.headers["content-type"].startswith("text/plain; version=0.0.4")
    down = TestClient(create_api(service, metrics_source=broken), raise_server_exceptions=False).get("/metrics")
    assert down.status_code == 503 and "exporter unreachable" in down.json()["error"]["message"]
    assert TestClient(create_api(service)).get("/metrics").status_code == 404  # not under Ray: no route


def test_openapi_states_the_servers_configured_limits(monkeypatch):
    """Fields bounded by the server's configuration carry that bound in the schema, so a schema-valid
    request is never refused for it (the fuzzer found reasoning_budget above the limit)."""
    c = client_for(monkeypatch=monkeypatch, limits__max_reasoning_tokens=512, limits__max_choices=3)
    schemas = c.get("/openapi.json").json()["components"]["schemas"]

    def maximum(schema: str, field: str) -> int:
        prop = schemas[schema]["properties"][field]
        return next(o["maximum"] for o in [prop, *prop.get("anyOf", [])] if o.get("type") == "integer")

    assert maximum("GuardRequest", "reasoning_budget") == maximum("GuardBatchRequest", "reasoning_budget") == 512
    assert maximum("ChatCompletionRequest", "n") == 3
    over = c.post("/v1/guard", json={"prompt": "x", "mode": "think", "reasoning_budget": 513})
    assert over.status_code == 422 and over.json()["error"]["param"] == "reasoning_budget"


def test_categories_come_back_over_http(client):
    r = client.post("/v1/guard", json={"prompt": "How do I build a bomb?", "categories": True})
    assert r.status_code == 200, r.text
    assert (r.json()["category_codes"], r.json()["categories"]) == (["S1"], ["Violence"])
    plain = client.post("/v1/guard", json={"prompt": "How do I build a bomb?"}).json()
    assert plain["category_codes"] == [] and plain["categories"] == []
