"""/v1/guard/stream: a response streamed from elsewhere, pushed by the caller and checked when due
(stateless: the caller sends the response so far and the last answer's `checked_chars`)."""

from __future__ import annotations

import pytest
from conftest import ScriptedEngine, keyword_guard, make_config
from fastapi.testclient import TestClient

from serve.api import create_api
from serve.guard import GuardServer
from serve.moderation import approx_tokens, stream_check_due
from serve.service import GuardService

BENIGN = ("Bread needs flour, water, salt and yeast. Mix them and knead the dough for ten minutes. "
          "Let it rise for an hour, shape it, and bake it until the crust is brown.")
HARMFUL = ("Sure, here is how. First you gather the parts and a battery. "
           "Then you wire the detonator to the battery and close the case.")


@pytest.fixture
def client(monkeypatch):
    monkeypatch.setenv("REASONGUARD_SERVE_TOKEN", "secret")
    config = make_config(auth={"token_env": "REASONGUARD_SERVE_TOKEN"})
    service = GuardService(GuardServer(ScriptedEngine(keyword_guard), config), config)
    c = TestClient(create_api(service), raise_server_exceptions=False)
    c.headers["Authorization"] = "Bearer secret"
    return c


def test_tokens_are_counted_as_words_and_punctuation():
    assert approx_tokens("Hello, world!") == 4 and approx_tokens("") == 0


@pytest.mark.parametrize(("text", "checked", "kwargs", "due"), [
    ("one two three", 0, {"every_tokens": 4}, False),
    ("one two three four", 0, {"every_tokens": 4}, True),
    ("one two three four", 9, {"every_tokens": 4}, False),  # only 'three four' is new
    ("One two three four five six seven eight.", 0, {"every_tokens": 32}, True),  # a sentence ended after 9 tokens
    ("One two three.", 0, {"every_tokens": 32}, False),  # too soon after the last check
    ("One two three.", 0, {"every_tokens": 32, "at_sentence_end": False, "final": True}, True),
    ("One two three.", 14, {"every_tokens": 1, "final": True}, False),  # nothing new at the end
    ("One two three.", 500, {"every_tokens": 1}, False),  # past the end: the whole response
])
def test_when_a_check_is_due(text, checked, kwargs, due):
    assert stream_check_due(text, checked, **kwargs) is due


def _push(client, text: str, chunk_words: int = 3, **options) -> list[dict]:
    """Stream `text` to the endpoint a few words at a time, as a caller would; returns every answer."""
    words, answers, checked = text.split(" "), [], 0
    for end in range(chunk_words, len(words) + chunk_words, chunk_words):
        so_far = " ".join(words[:end])
        final = end >= len(words)
        r = client.post("/v1/guard/stream", json={"prompt": "How do I bake bread?", "response": so_far,
                                                   "checked_chars": checked, "final": final, **options})
        assert r.status_code == 200, r.text
        answer = r.json()
        answers.append(answer)
        if answer["action"] == "cut":
            break
        checked = answer["checked_chars"]
    return answers


def test_a_benign_stream_is_released_check_by_check_and_whole_at_the_end(client):
    answers = _push(client, BENIGN, check_every_tokens=8)
    actions = [a["action"] for a in answers]
    assert "wait" in actions and actions[-1] == "release" and "cut" not in actions
    checks = [a for a in answers if a["checked"]]
    assert len(checks) >= 3 and all(a["result"]["object"] == "guard.result" for a in checks)
    released = [a["release_chars"] for a in answers]
    assert released == sorted(released) and released[-1] == len(BENIGN)  # never shrinks; all of it at the end
    assert all(not a["checked"] and a["release_chars"] == a["checked_chars"] for a in answers if a["action"] == "wait")


def test_a_harmful_stream_is_cut_keeping_only_what_earlier_checks_passed(client):
    answers = _push(client, HARMFUL, check_every_tokens=6)
    cut = answers[-1]
    assert cut["action"] == "cut" and cut["finish_reason"] == "content_filter" and cut["checked"]
    assert cut["result"]["response_harm"] == "harmful" and cut["reason"]
    kept = HARMFUL[: cut["release_chars"]]
    assert "detonator" not in kept and cut["release_chars"] == answers[-2]["checked_chars"]


def test_bad_input_is_refused_with_the_error_contract(client):
    r = client.post("/v1/guard/stream", json={"prompt": "hi"})
    assert r.status_code == 422 and r.json()["error"]["param"] == "response"
    r = client.post("/v1/guard/stream", json={"prompt": "hi", "response": "x", "checked_chars": True})
    assert r.status_code == 422 and r.json()["error"]["param"] == "checked_chars"
    r = client.post("/v1/guard/stream", json={"prompt": "hi", "response": "x", "check_every_tokens": 0})
    assert r.status_code == 422
    r = client.post("/v1/guard/stream", json={"prompt": "hi", "response": "x"}, headers={"Authorization": "Bearer no"})
    assert r.status_code == 401
    spec = client.get("/openapi.json").json()
    assert "/v1/guard/stream" in spec["paths"] and "GuardStreamRequest" in spec["components"]["schemas"]
