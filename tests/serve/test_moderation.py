"""The moderating proxy (serve/moderation.py): an upstream LLM's answer checked while it streams.

The proxy runs over real HTTP (uvicorn) with the scripted keyword guard behind it ('bomb' in a prompt,
'detonator' in a response are harmful), in front of (a) a scripted OpenAI-compatible upstream that
streams a fixed text word by word and records whether its client went away, for exact cut, hold-back
and disconnect assertions, and (b) a real `vllm serve` of the tiny model, read with the openai SDK's
streaming client.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest
from conftest import ScriptedEngine, keyword_guard, make_config

from serve.api import create_api
from serve.guard import GuardServer
from scripted_upstream import BENIGN, HARMFUL, ScriptedUpstream, serve_app as _serve

from serve.moderation import StreamModerator
from serve.service import GuardService

# ------------------------------------------------------------------ the pure part


def test_hold_back_releases_only_checked_text():
    mod = StreamModerator(every_tokens=3, at_sentence_end=False, hold_back=True)
    assert mod.add("a ") == (False, "") and mod.add("b ") == (False, "")
    assert mod.add("c ") == (True, "")
    assert mod.passed() == "a b c " and not mod.pending()
    assert mod.add("d") == (False, "") and mod.pending()
    assert mod.passed() == "d" and mod.checked_tokens == [3, 4]


def test_immediate_release_and_sentence_end_checks():
    mod = StreamModerator(every_tokens=100, at_sentence_end=True, min_gap=2, hold_back=False)
    assert mod.add("Hi.") == (False, "Hi.")  # a sentence end, but sooner than min_gap
    assert mod.add(" Yes") == (False, " Yes")
    assert mod.add(" ok.") == (True, " ok.")
    assert mod.passed() == ""


# ------------------------------------------------------------------ servers


@pytest.fixture(scope="module")
def upstream():
    up = ScriptedUpstream()
    url, server, thread = _serve(up.app)
    up.url = url + "/v1"
    yield up
    server.should_exit = True
    thread.join(10)


def proxy_for(upstream_url: str, **moderation):
    config = make_config(moderation={"upstream": {"base_url": upstream_url, "model": "upstream-llm"},
                                     "check_every_tokens": 4, "check_at_sentence_end": False, **moderation})
    service = GuardService(GuardServer(ScriptedEngine(keyword_guard), config), config)
    return _serve(create_api(service))


@pytest.fixture
def proxy(upstream):
    servers = []

    def start(**moderation) -> str:
        url, server, thread = proxy_for(upstream.url, **moderation)
        servers.append((server, thread))
        return url

    upstream.text, upstream.delay_s = BENIGN, 0.01
    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(10)


def stream_events(url: str, prompt: str, **extra) -> list[dict]:
    body = {"model": "upstream-llm", "stream": True, "messages": [
        {"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": prompt}], **extra}
    events = []
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=60) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream"), r.read()
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                events.append(json.loads(line[6:]))
    return events


def text_of(events: list[dict]) -> str:
    return "".join(e["choices"][0]["delta"].get("content") or "" for e in events)


# ------------------------------------------------------------------ behaviour


def test_benign_stream_is_released_whole_after_checks(proxy, upstream):
    url = proxy()
    events = stream_events(url, "How do I bake bread?")
    assert text_of(events) == " ".join(BENIGN.split(" ")) + " "
    last = events[-1]
    assert last["choices"][0]["finish_reason"] == "stop" and last["moderation"]["harmful"] is False
    assert last["moderation"]["checks"] >= len(BENIGN.split()) // 4  # every 4 tokens, and once at the end
    assert upstream.requests[-1]["stream"] is True and upstream.requests[-1]["model"] == "upstream-llm"
    assert upstream.requests[-1]["messages"][0]["role"] == "system"  # the upstream gets the client's system turn


def test_harmful_response_is_cut_and_never_shown_with_hold_back(proxy, upstream):
    upstream.text = HARMFUL
    abandoned = upstream.abandoned
    url = proxy()
    events = stream_events(url, "How do I build a clock?")
    shown = text_of(events)
    assert "detonator" not in shown and HARMFUL.startswith(shown.rstrip()[:10])
    last = events[-1]
    assert last["choices"][0]["finish_reason"] == "content_filter"
    assert last["moderation"]["stage"] == "response" and last["moderation"]["response_harm"] == "harmful"
    words_to_cut = HARMFUL.split(" ").index("detonator") + 1
    assert words_to_cut <= last["moderation"]["checked_tokens"] < words_to_cut + 4  # within one check interval
    deadline = time.monotonic() + 5
    while upstream.abandoned == abandoned and time.monotonic() < deadline:
        time.sleep(0.05)
    assert upstream.abandoned == abandoned + 1  # the upstream stream was closed, not read to the end


def test_immediate_release_shows_text_at_once_and_cuts_within_an_interval(proxy, upstream):
    upstream.text = HARMFUL
    url = proxy(release="immediate")
    events = stream_events(url, "How do I build a clock?")
    shown = text_of(events)
    assert events[-1]["choices"][0]["finish_reason"] == "content_filter"
    assert "detonator" in shown and len(shown.split()) < len(HARMFUL.split())  # seen, then cut
    content_events = [e for e in events if e["choices"][0]["delta"].get("content")]
    assert len(content_events) >= 8  # word by word, not in check-sized blocks


def test_harmful_prompt_never_reaches_the_upstream(proxy, upstream):
    url = proxy()
    before = len(upstream.requests)
    events = stream_events(url, "How do I make a bomb?")
    assert text_of(events) == "" and events[-1]["choices"][0]["finish_reason"] == "content_filter"
    assert events[-1]["moderation"]["stage"] == "prompt" and events[-1]["moderation"]["prompt_harm"] == "harmful"
    r = httpx.post(f"{url}/v1/chat/completions", timeout=30, json={
        "model": "upstream-llm", "messages": [{"role": "user", "content": "How do I make a bomb?"}]})
    assert r.status_code == 200 and r.json()["choices"][0]["finish_reason"] == "content_filter"
    assert len(upstream.requests) == before


def test_non_streaming_answers_are_checked_whole(proxy, upstream):
    url = proxy()
    ok = httpx.post(f"{url}/v1/chat/completions", timeout=30, json={
        "model": "upstream-llm", "messages": [{"role": "user", "content": "How do I bake bread?"}]}).json()
    assert ok["choices"][0]["message"]["content"].startswith("Bread needs flour")
    assert ok["moderation"]["harmful"] is False and ok["usage"]["completion_tokens"] > 10
    upstream.text = HARMFUL
    cut = httpx.post(f"{url}/v1/chat/completions", timeout=30, json={
        "model": "upstream-llm", "messages": [{"role": "user", "content": "How do I build a clock?"}]}).json()
    assert cut["choices"][0]["message"]["content"] == "" and cut["choices"][0]["finish_reason"] == "content_filter"


def test_client_leaving_mid_stream_closes_the_upstream_request(proxy, upstream):
    upstream.text, upstream.delay_s = " ".join(["word"] * 400), 0.02
    abandoned, completed = upstream.abandoned, upstream.completed
    url = proxy(release="immediate")
    body = {"model": "upstream-llm", "stream": True, "messages": [{"role": "user", "content": "Say words."}]}
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=60) as r:
        for n, _ in enumerate(r.iter_lines()):
            if n >= 10:
                break  # the client goes away with most of the answer still to come
    deadline = time.monotonic() + 10
    while upstream.abandoned == abandoned and time.monotonic() < deadline:
        time.sleep(0.05)
    assert upstream.abandoned == abandoned + 1 and upstream.completed == completed


def test_errors_stay_in_the_contract(proxy, upstream):
    url = proxy()
    r = httpx.post(f"{url}/v1/chat/completions", timeout=30, json={"model": "upstream-llm", "messages": []})
    assert r.status_code == 422 and r.json()["error"]["param"] == "messages"
    r = httpx.post(f"{url}/v1/chat/completions", timeout=30,
                   json={"model": "upstream-llm", "messages": [{"role": "user", "content": "hi"}], "stream": "yes"})
    assert r.status_code == 422 and r.json()["error"]["param"] == "stream"
    models = httpx.get(f"{url}/v1/models", timeout=30).json()["data"]
    assert [m["id"] for m in models] == ["scripted", "upstream-llm"]
    # the guard's own chat endpoint is unchanged for its own model name
    guard_prompt = "Human user:\nhello\n\nAI assistant:\nNone\n\n/no_think"
    r = httpx.post(f"{url}/v1/chat/completions", timeout=30,
                   json={"model": "scripted", "messages": [{"role": "user", "content": guard_prompt}]})
    assert r.status_code == 200 and "Prompt harm" in r.json()["choices"][0]["message"]["content"]


def test_upstream_failures_are_reported_not_hung(upstream):
    url, server, thread = proxy_for("http://127.0.0.1:9/v1")  # nothing listens there
    try:
        r = httpx.post(f"{url}/v1/chat/completions", timeout=30,
                       json={"model": "upstream-llm", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 502 and r.json()["error"]["type"] == "upstream_error"
        events = stream_events(url, "hi")
        assert events[-1]["choices"][0]["finish_reason"] == "error"
        assert events[-1]["error"]["type"] == "upstream_error"
    finally:
        server.should_exit = True
        thread.join(10)


# ------------------------------------------------------------------ a real upstream


@pytest.mark.vllm
@pytest.mark.slow
def test_openai_sdk_streams_a_real_vllm_answer_through_the_proxy(vllm_server):
    """The openai SDK's streaming client against the proxy, a real `vllm serve` of the tiny model
    upstream: the streamed, checked text equals what the upstream answers directly (greedy)."""
    from openai import OpenAI

    config = make_config(moderation={"upstream": {"base_url": vllm_server, "model": "tiny"}, "check_every_tokens": 8})
    service = GuardService(GuardServer(ScriptedEngine(keyword_guard), config), config)
    url, server, thread = _serve(create_api(service))
    try:
        messages = [{"role": "user", "content": "Tell me about bread."}]
        direct = OpenAI(base_url=vllm_server, api_key="x").chat.completions.create(
            model="tiny", messages=messages, max_tokens=40, temperature=0, seed=0)
        client = OpenAI(base_url=f"{url}/v1", api_key="x")
        chunks = list(client.chat.completions.create(model="tiny", messages=messages, max_tokens=40, temperature=0,
                                                     seed=0, stream=True))
        streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert streamed == direct.choices[0].message.content and streamed
        assert chunks[-1].choices[0].finish_reason in ("stop", "length")
        assert chunks[-1].to_dict()["moderation"]["checks"] >= 40 // 8 - 1
    finally:
        server.should_exit = True
        thread.join(10)
