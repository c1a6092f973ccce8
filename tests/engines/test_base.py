"""The engine interface: SamplingConfig validation and the scripted FakeEngine."""

from __future__ import annotations

import dataclasses

import pytest

from reasonguard.engines.base import Engine, FakeEngine, Generation, RequestOutput, SamplingConfig


def test_sampling_defaults_follow_the_paper():
    s = SamplingConfig()
    assert (s.n, s.temperature, s.top_p, s.max_tokens, s.seed, s.logprobs) == (1, 0.6, 0.95, 400, None, None)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n": 0}, "n must be"),
        ({"temperature": -0.1}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"top_p": 1.01}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
    ],
)
def test_sampling_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SamplingConfig(**kwargs)


def test_sampling_is_immutable_and_accepts_edges():
    s = SamplingConfig(n=4, temperature=0, top_p=1.0, max_tokens=1, seed=7, logprobs=5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.n = 2  # type: ignore[misc]
    assert dataclasses.replace(s, n=2).n == 2


def test_fake_engine_scripts_n_samples_per_request_in_order():
    engine = FakeEngine(respond=lambda messages, i: f"{messages[-1]['content']} #{i}")
    requests = [[{"role": "user", "content": "a b c"}], [{"role": "system", "content": "x"}, {"role": "user", "content": "d"}]]
    outs = engine.generate(requests, SamplingConfig(n=3))
    assert isinstance(engine, Engine)
    assert engine.calls == [2]
    assert [len(o.generations) for o in outs] == [3, 3]
    assert [g.text for g in outs[0].generations] == ["a b c #0", "a b c #1", "a b c #2"]
    assert outs[0].generations[0] == Generation(text="a b c #0", output_tokens=4, finish_reason="stop")
    assert outs[1].prompt_tokens == 2 and outs[0].prompt_tokens == 3
    assert isinstance(outs[0], RequestOutput)
    engine.close()


def test_fake_engine_counts_calls_and_handles_empty_batches():
    engine = FakeEngine(respond=lambda m, i: "ok")
    assert engine.generate([], SamplingConfig()) == []
    engine.generate([[{"role": "user", "content": "q"}]], SamplingConfig())
    assert engine.calls == [0, 1]
