"""OpenAIChatEngine: retry/backoff/timeout logic against scripted loopback servers, then a real `vllm serve`."""

from __future__ import annotations

import asyncio
import email.utils
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

import pytest

from reasonguard.engines.base import Engine, SamplingConfig
from reasonguard.engines.openai_engine import (
    OpenAIChatEngine,
    OpenAIEngineError,
    chat_completions_url,
    is_retryable,
    parse_retry_after,
    split_tokens,
    with_reasoning,
)
from reasonguard.verdict import parse_verdict

from .conftest import free_port, needs_vllm

MSG = [{"role": "user", "content": "Is this harmful?"}]
FAST = dict(backoff_base_s=0.01, timeout_s=5)  # quick retries for the scripted servers


# --- a scripted loopback server ------------------------------------------------------------


def completion(texts: list[str], prompt_tokens: int = 11, completion_tokens: int | None = None, **message_extra) -> dict:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "model": "m",
        "choices": [
            {"index": i, "message": {"role": "assistant", "content": t, **message_extra}, "finish_reason": "stop"}
            for i, t in enumerate(texts)
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": sum(len(t.split()) for t in texts) if completion_tokens is None else completion_tokens,
        },
    }


def echo(payload: dict) -> tuple[int, dict, dict]:
    """The default good reply: n choices that name their index and the seed they were asked with."""
    n = payload.get("n", 1)
    return 200, {}, completion([f"sample {i} seed {payload.get('seed')}" for i in range(n)])


Behaviour = Callable[[dict], tuple]  # payload -> (status, headers, body[, delay_s])


class ScriptedServer:
    """ThreadingHTTPServer on 127.0.0.1: request k gets behaviours[k] (the last one repeats)."""

    def __init__(self, behaviours: list[Behaviour]) -> None:
        self.behaviours = behaviours
        self.requests: list[dict] = []  # {"payload", "headers", "t"}
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.httpd.handle_error = lambda request, client_address: None  # clients that gave up (timeouts)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server._lock:
                    k = len(server.requests)
                    server.requests.append({"payload": payload, "headers": dict(self.headers), "t": time.monotonic(), "path": self.path})
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    status, headers, body, *delay = server.behaviours[min(k, len(server.behaviours) - 1)](payload)
                    time.sleep(delay[0] if delay else 0)
                    data = (json.dumps(body) if isinstance(body, dict) else body).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data)
                finally:
                    with server._lock:
                        server.in_flight -= 1

            def log_message(self, *args):
                pass

        return Handler

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def scripted():
    servers: list[ScriptedServer] = []

    def start(*behaviours: Behaviour) -> ScriptedServer:
        servers.append(ScriptedServer(list(behaviours) or [echo]))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def fail(status: int, body: str = "", headers: dict | None = None) -> Behaviour:
    return lambda payload: (status, headers or {}, body)


# --- pure helpers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "base, url",
    [
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000/v1/chat/completions"),
        ("http://127.0.0.1:8000/", "http://127.0.0.1:8000/v1/chat/completions"),
        ("https://api.example.com/v1/", "https://api.example.com/v1/chat/completions"),
        ("http://h/v1/chat/completions", "http://h/v1/chat/completions"),
    ],
)
def test_chat_completions_url(base, url):
    assert chat_completions_url(base) == url


def test_retryable_statuses():
    assert [s for s in (200, 400, 401, 403, 404, 408, 409, 422, 429, 500, 502, 503, 504) if is_retryable(s)] == [408, 429, 500, 502, 503, 504]


def test_parse_retry_after():
    assert parse_retry_after("3") == 3.0 and parse_retry_after("0.5") == 0.5 and parse_retry_after("-2") == 0.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= parse_retry_after(future) <= 31
    assert parse_retry_after(email.utils.formatdate(time.time() - 30, usegmt=True)) == 0.0


def test_split_tokens_keeps_the_total():
    assert split_tokens(10, ["aaaa", "a"]) == [8, 2]
    assert sum(split_tokens(7, ["ab", "abc", "a"])) == 7
    assert split_tokens(0, ["x", "y"]) == [0, 0]


def test_with_reasoning_builds_a_think_block_the_parser_reads():
    text = with_reasoning("Prompt harm: harmful\nResponse harm: None", "  The user asks for a weapon.  ")
    assert text == "<think>\nThe user asks for a weapon.\n</think>\n\nPrompt harm: harmful\nResponse harm: None"
    verdict = parse_verdict(text, expect_response=False)
    assert verdict.parsed_ok and verdict.prompt_harm == "harmful" and "weapon" in verdict.reasoning
    assert with_reasoning("<think>x</think> done", "x") == "<think>x</think> done"  # already inline
    assert with_reasoning(None, None) == ""


def test_backoff_delays_grow_with_jitter_and_honour_retry_after():
    engine = OpenAIChatEngine("http://127.0.0.1:9", "m", backoff_base_s=1.0, backoff_max_s=8.0)
    for attempt, ceiling in [(0, 1.0), (1, 2.0), (2, 4.0), (3, 8.0), (6, 8.0)]:
        delays = [engine._delay(attempt, None) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays) and len(set(delays)) > 1
    assert all(3.0 <= engine._delay(0, 3.0) <= 3.3 for _ in range(20))
    assert engine._delay(0, 10_000) == engine.retry_after_max_s


# --- retries, timeouts and errors against scripted servers ---------------------------------


def test_retries_503_then_succeeds(scripted):
    server = scripted(fail(503, "overloaded"), fail(503, "overloaded"), echo)
    out = OpenAIChatEngine(server.url, "m", **FAST).generate([MSG], SamplingConfig(max_tokens=5))
    assert len(server.requests) == 3
    assert out[0].generations[0].text == "sample 0 seed None"
    assert out[0].prompt_tokens == 11 and out[0].generations[0].output_tokens == 4
    payload = server.requests[0]["payload"]
    assert payload["messages"] == MSG and payload["model"] == "m" and payload["max_tokens"] == 5 and "n" not in payload
    assert server.requests[0]["path"] == "/v1/chat/completions"


def recorded_sleeps() -> tuple[list[float], object]:
    """A sleep that records the waits a retry asks for and returns at once: behaviour, not the clock."""
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    return waits, sleep


def test_honours_retry_after(scripted):
    server = scripted(fail(429, "slow down", {"Retry-After": "7"}), echo)
    waits, sleep = recorded_sleeps()
    OpenAIChatEngine(server.url, "m", sleep=sleep, **FAST).generate([MSG], SamplingConfig(max_tokens=5))
    assert len(server.requests) == 2
    assert len(waits) == 1 and 7.0 <= waits[0] <= 7.7  # never earlier than asked, at most +10% jitter


def test_backoff_grows_exponentially_and_is_capped(scripted):
    server = scripted(*[fail(503, "busy")] * 4, echo)
    waits, sleep = recorded_sleeps()
    engine = OpenAIChatEngine(server.url, "m", backoff_base_s=1.0, backoff_max_s=3.0, max_retries=4, timeout_s=5, sleep=sleep)
    engine.generate([MSG], SamplingConfig(max_tokens=5))
    assert len(server.requests) == 5 and len(waits) == 4
    for wait, ceiling in zip(waits, [1.0, 2.0, 3.0, 3.0]):  # base * 2^attempt, capped; equal jitter: [c/2, c]
        assert ceiling / 2 <= wait <= ceiling


def test_timeout_is_retried_then_reported(scripted):
    server = scripted(lambda p: (*echo(p), 1.5))  # every reply comes after the client gave up
    waits, sleep = recorded_sleeps()
    engine = OpenAIChatEngine(server.url, "m", timeout_s=0.3, max_retries=1, backoff_base_s=0.01, sleep=sleep)
    with pytest.raises(OpenAIEngineError, match=r"failed after 2 attempts; last error: timed out after 0.3s") as err:
        engine.generate([MSG], SamplingConfig(max_tokens=5))
    assert err.value.status is None
    assert len(server.requests) == 2 and len(waits) == 1  # two attempts, one wait between them


def test_slow_first_attempt_then_success(scripted):
    server = scripted(lambda p: (*echo(p), 1.0), echo)
    out = OpenAIChatEngine(server.url, "m", timeout_s=0.3, backoff_base_s=0.01).generate([MSG], SamplingConfig(max_tokens=5))
    assert len(server.requests) == 2 and out[0].generations[0].text.startswith("sample 0")


def test_400_is_not_retried(scripted):
    server = scripted(fail(400, json.dumps({"error": {"message": "messages: field required"}})))
    with pytest.raises(OpenAIEngineError, match=r"HTTP 400 \(not retried\).*field required") as err:
        OpenAIChatEngine(server.url, "m", **FAST).generate([MSG], SamplingConfig(max_tokens=5))
    assert err.value.status == 400 and len(server.requests) == 1


def test_last_retry_names_status_and_body(scripted):
    server = scripted(fail(500, "x" * 2000))
    with pytest.raises(OpenAIEngineError, match=r"failed after 3 attempts; last error: HTTP 500: x+\.\.\.$") as err:
        OpenAIChatEngine(server.url, "m", max_retries=2, backoff_base_s=0.01).generate([MSG], SamplingConfig(max_tokens=5))
    assert err.value.status == 500 and len(server.requests) == 3
    assert len(str(err.value)) < 700  # an excerpt, not the whole body


def test_connection_errors_are_retried():
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    with pytest.raises(OpenAIEngineError, match=r"failed after 2 attempts; last error: connection error \(ConnectError"):
        OpenAIChatEngine(url, "m", max_retries=1, backoff_base_s=0.01).generate([MSG], SamplingConfig(max_tokens=5))


def test_invalid_json_and_no_choices_are_clear_errors(scripted):
    with pytest.raises(OpenAIEngineError, match="not JSON: <html>"):
        OpenAIChatEngine(scripted(lambda p: (200, {}, "<html>oops</html>")).url, "m", **FAST).generate([MSG], SamplingConfig())
    with pytest.raises(OpenAIEngineError, match="no choices"):
        OpenAIChatEngine(scripted(lambda p: (200, {}, {"choices": []})).url, "m", **FAST).generate([MSG], SamplingConfig())


def test_bounded_concurrency(scripted):
    server = scripted(lambda p: (*echo(p), 0.1))
    engine = OpenAIChatEngine(server.url, "m", max_concurrency=4, **FAST)
    outs = engine.generate([[{"role": "user", "content": f"q{i}"}] for i in range(20)], SamplingConfig(max_tokens=5))
    assert len(outs) == 20 and len(server.requests) == 20
    assert server.max_in_flight == 4
    assert sorted(r["payload"]["messages"][0]["content"] for r in server.requests) == sorted(f"q{i}" for i in range(20))
    assert all(o.latency_s >= 0.1 for o in outs)


def test_n_is_passed_and_tokens_are_shared(scripted):
    server = scripted(lambda p: (200, {}, completion(["short", "a longer one here"], completion_tokens=10)))
    out = OpenAIChatEngine(server.url, "m", **FAST).generate([MSG], SamplingConfig(n=2, seed=3))[0]
    assert server.requests[0]["payload"]["n"] == 2 and server.requests[0]["payload"]["seed"] == 3
    assert [g.text for g in out.generations] == ["short", "a longer one here"]
    assert sum(g.output_tokens for g in out.generations) == 10


def test_rejected_n_falls_back_to_single_calls(scripted):
    def no_n(payload):
        if payload.get("n", 1) > 1:
            return 400, {}, {"error": {"message": "n is not supported"}}
        return echo(payload)

    server = scripted(no_n)
    engine = OpenAIChatEngine(server.url, "m", **FAST)
    out = engine.generate([MSG], SamplingConfig(n=3, seed=10))[0]
    assert sorted(g.text for g in out.generations) == ["sample 0 seed 10", "sample 0 seed 11", "sample 0 seed 12"]
    assert engine.n_supported is False and len(server.requests) == 4
    engine.generate([MSG], SamplingConfig(n=2, seed=0))
    assert len(server.requests) == 6 and all("n" not in r["payload"] for r in server.requests[4:])


def test_fewer_choices_than_n_are_topped_up(scripted):
    server = scripted(lambda p: (200, {}, completion(["only one"])))  # a server that ignores n
    out = OpenAIChatEngine(server.url, "m", **FAST).generate([MSG], SamplingConfig(n=3, seed=0))[0]
    assert len(out.generations) == 3 and len(server.requests) == 3


def test_greedy_asks_once_and_repeats(scripted):
    server = scripted()
    out = OpenAIChatEngine(server.url, "m", **FAST).generate([MSG], SamplingConfig(n=3, temperature=0))[0]
    assert len(server.requests) == 1 and "n" not in server.requests[0]["payload"]
    assert len(out.generations) == 3 and len({g.text for g in out.generations}) == 1


def test_reasoning_content_is_wrapped_and_logprobs_mapped(scripted):
    body = completion(["Prompt harm: unharmful\nResponse harm: None"], reasoning_content="Baking bread is safe.")
    body["choices"][0]["logprobs"] = {"content": [
        {"token": "Prompt", "logprob": -0.1, "top_logprobs": [{"token": "Prompt", "logprob": -0.1}, {"token": "The", "logprob": -2.5}]},
        {"token": " harm", "logprob": -3.0, "top_logprobs": [{"token": " Harm", "logprob": -0.2}]},
    ]}
    server = scripted(lambda p: (200, {}, body))
    gen = OpenAIChatEngine(server.url, "m", **FAST).generate([MSG], SamplingConfig(logprobs=1))[0].generations[0]
    assert gen.text.startswith("<think>\nBaking bread is safe.\n</think>\n\nPrompt harm: unharmful")
    assert parse_verdict(gen.text, expect_response=False).reasoning == "Baking bread is safe."
    assert gen.logprobs == ({"Prompt": -0.1, "The": -2.5}, {" Harm": -0.2, " harm": -3.0})
    assert gen.output_tokens == 2  # exact from logprobs
    assert server.requests[0]["payload"]["logprobs"] is True and server.requests[0]["payload"]["top_logprobs"] == 1


def test_api_key_from_env_and_explicit(scripted, monkeypatch):
    server = scripted()
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("REASONGUARD_TEACHER_API_KEY", "sk-teacher")
    OpenAIChatEngine(server.url, "m", **FAST).generate([MSG], SamplingConfig())
    OpenAIChatEngine(server.url, "m", api_key="sk-explicit", **FAST).generate([MSG], SamplingConfig())
    monkeypatch.delenv("REASONGUARD_TEACHER_API_KEY")
    OpenAIChatEngine(server.url, "m", **FAST).generate([MSG], SamplingConfig())
    auth = [r["headers"].get("Authorization") for r in server.requests]
    assert auth == ["Bearer sk-teacher", "Bearer sk-explicit", None]


def test_generate_inside_a_running_event_loop(scripted):
    server = scripted()
    engine = OpenAIChatEngine(server.url, "m", **FAST)

    async def caller():  # e.g. a notebook cell or an async server calling the sync API
        return engine.generate([MSG, MSG], SamplingConfig())

    outs = asyncio.run(caller())
    assert len(outs) == 2 and isinstance(engine, Engine)
    assert len(asyncio.run(engine.agenerate([MSG], SamplingConfig()))) == 1


def test_one_failure_cancels_the_rest(scripted):
    server = scripted(fail(401, "bad key"), lambda p: (*echo(p), 2.0))
    with pytest.raises(OpenAIEngineError, match="HTTP 401"):
        OpenAIChatEngine(server.url, "m", max_concurrency=1, **FAST).generate([MSG] * 5, SamplingConfig())
    assert len(server.requests) == 1  # the four waiting requests were cancelled, never sent


# --- a real vllm serve ---------------------------------------------------------------------


@pytest.mark.vllm
@needs_vllm
class TestRealVLLMServer:
    def test_generations_come_back_with_bounded_concurrency(self, vllm_server):
        engine = OpenAIChatEngine(vllm_server, "tiny", max_concurrency=4, timeout_s=60)
        requests = [[{"role": "user", "content": f"Question number {i}?"}] for i in range(20)]
        outs = engine.generate(requests, SamplingConfig(max_tokens=8, seed=0))
        assert len(outs) == 20
        for out in outs:
            (gen,) = out.generations
            assert isinstance(gen.text, str) and 1 <= gen.output_tokens <= 8
            assert gen.finish_reason in ("stop", "length") and (gen.finish_reason == "length") == (gen.output_tokens == 8)
            assert out.prompt_tokens > 5 and out.latency_s > 0

    def test_n_samples_seed_and_logprobs(self, vllm_server):
        engine = OpenAIChatEngine(vllm_server, "tiny", timeout_s=60)
        cfg = SamplingConfig(n=3, temperature=1.0, max_tokens=6, seed=1, logprobs=2)
        out = engine.generate([MSG], cfg)[0]
        assert engine.n_supported and len(out.generations) == 3 and len({g.text for g in out.generations}) > 1
        for gen in out.generations:
            assert len(gen.logprobs) == gen.output_tokens
            assert all(2 <= len(step) <= 3 and all(v <= 0 for v in step.values()) for step in gen.logprobs)
        assert [g.text for g in engine.generate([MSG], cfg)[0].generations] == [g.text for g in out.generations]

    def test_greedy_n(self, vllm_server):
        out = OpenAIChatEngine(vllm_server, "tiny").generate([MSG], SamplingConfig(n=2, temperature=0, max_tokens=5))[0]
        assert len(out.generations) == 2 and out.generations[0] == out.generations[1]

    def test_unknown_model_is_a_clear_404(self, vllm_server):
        with pytest.raises(OpenAIEngineError, match=r"HTTP 404 \(not retried\)"):
            OpenAIChatEngine(vllm_server, "no-such-model").generate([MSG], SamplingConfig(max_tokens=2))
