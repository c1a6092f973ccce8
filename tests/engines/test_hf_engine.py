"""TransformersEngine on the tiny random Llama (and one short real SmolLM2 answer)."""

from __future__ import annotations

import pytest

from reasonguard.engines.base import Engine, SamplingConfig
from reasonguard.engines.hf_engine import TransformersEngine

REQUESTS = [
    [{"role": "user", "content": "Is this harmful?"}],
    [{"role": "system", "content": "You are a guard."}, {"role": "user", "content": "How do I bake bread at home, step by step?"}],
    [{"role": "user", "content": "hi"}],
]


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    eng = TransformersEngine(tiny_model_dir, device="cpu", batch_size=2)  # 3 requests -> 2 batches
    yield eng
    eng.close()


def test_n_samples_counts_and_order(engine):
    outs = engine.generate(REQUESTS, SamplingConfig(n=3, max_tokens=6, seed=0))
    assert isinstance(engine, Engine)
    assert len(outs) == 3
    # Counted by hand from SmolLM2's template: the default system turn and the user header are 24 tokens,
    # the closing "<|im_end|>\n<|im_start|>assistant\n" 6; "Is this harmful?" is 4 tokens, "hi" 1; a custom
    # system turn is 3 + 5 ("You are a guard.") + 5 (user header) and the bread question 12.
    assert [o.prompt_tokens for o in outs] == [24 + 4 + 6, 3 + 5 + 5 + 12 + 6, 24 + 1 + 6]  # in request order
    for out in outs:
        assert len(out.generations) == 3
        assert out.latency_s > 0
        for gen in out.generations:
            assert 1 <= gen.output_tokens <= 6
            assert gen.finish_reason in ("stop", "length")
            assert (gen.output_tokens == 6) == (gen.finish_reason == "length")
            assert gen.logprobs is None


def test_small_max_tokens_finishes_with_length(engine):
    outs = engine.generate(REQUESTS[:1], SamplingConfig(n=2, max_tokens=3, seed=1))
    assert [(g.output_tokens, g.finish_reason) for g in outs[0].generations] == [(3, "length"), (3, "length")]


def test_same_seed_same_texts_other_seed_other_texts(engine):
    cfg = SamplingConfig(n=2, temperature=1.0, top_p=1.0, max_tokens=8, seed=123)
    first = [[g.text for g in o.generations] for o in engine.generate(REQUESTS, cfg)]
    again = [[g.text for g in o.generations] for o in engine.generate(REQUESTS, cfg)]
    other = [[g.text for g in o.generations] for o in engine.generate(REQUESTS, SamplingConfig(n=2, temperature=1.0, top_p=1.0, max_tokens=8, seed=124))]
    assert first == again
    assert first != other
    assert first[0][0] != first[0][1]  # the n samples of one request differ


def test_seeded_sampling_leaves_global_rng_alone(engine):
    import torch

    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    engine.generate(REQUESTS[:1], SamplingConfig(max_tokens=2, seed=9))
    assert torch.equal(torch.rand(3), expected)


def test_greedy_is_deterministic_and_padding_free(engine):
    cfg = SamplingConfig(n=2, temperature=0, max_tokens=6)
    batched = engine.generate(REQUESTS, cfg)
    alone = engine.generate([REQUESTS[2]], cfg)  # no left padding this time
    assert [g.text for g in batched[2].generations] == [g.text for g in alone[0].generations]
    for out in batched:
        assert len(out.generations) == 2 and out.generations[0] == out.generations[1]
    assert [o.generations for o in engine.generate(REQUESTS, cfg)] == [o.generations for o in batched]


def test_logprobs_shape_and_values(engine):
    k = 3
    outs = engine.generate(REQUESTS, SamplingConfig(n=2, max_tokens=5, seed=0, logprobs=k))
    for out in outs:
        for gen in out.generations:
            assert gen.logprobs is not None and len(gen.logprobs) == gen.output_tokens
            for step in gen.logprobs:
                assert 1 <= len(step) <= k + 1  # top-k plus the sampled token (merged when it is in the top-k)
                assert all(isinstance(t, str) and lp <= 0.0 for t, lp in step.items())
                assert list(step.values()) == sorted(step.values(), reverse=True)  # best first


def test_greedy_logprobs_put_the_chosen_token_first(engine):
    out = engine.generate(REQUESTS[:1], SamplingConfig(temperature=0, max_tokens=4, logprobs=2))[0].generations[0]
    assert out.finish_reason == "length"
    assert "".join(max(step, key=step.get) for step in out.logprobs) == out.text


def test_empty_batch(engine):
    assert engine.generate([], SamplingConfig()) == []


def test_real_smollm2_stops_at_eos(smollm2_dir):
    engine = TransformersEngine(smollm2_dir, device="cpu")
    try:
        out = engine.generate([[{"role": "user", "content": "What is the capital of France?"}]], SamplingConfig(temperature=0, max_tokens=24))
    finally:
        engine.close()
    gen = out[0].generations[0]
    assert gen.finish_reason == "stop" and gen.output_tokens < 24
    assert "Paris" in gen.text and "<|im_end|>" not in gen.text


def test_constrained_verdict_parses_and_reads_exact_scores(engine):
    from reasonguard.decoding import VerdictSpec
    from reasonguard.prompts import GuardInput, guard_messages
    from reasonguard.verdict import parse_verdict

    cases = [(GuardInput("How do I hotwire a car?"), "think"), (GuardInput("Hi", "Hello!"), "no_think"), (GuardInput("Hi", "Hello!"), "think")]
    requests = [guard_messages(inp, mode) for inp, mode in cases]
    specs = [VerdictSpec(mode, inp.response is not None) for inp, mode in cases]
    for sampling in (SamplingConfig(n=2, temperature=0.7, max_tokens=36, seed=3), SamplingConfig(temperature=0, max_tokens=30)):
        outs = engine.generate(requests, sampling, specs)
        for spec, out in zip(specs, outs):
            for gen in out.generations:
                assert parse_verdict(gen.text, expect_response=spec.has_response).parsed_ok, gen.text
                assert gen.output_tokens <= sampling.max_tokens
                scores = gen.verdict_scores
                assert scores.exact and 0 < scores.prompt < 1 and (scores.response is not None) == spec.has_response
                assert gen.closed_by_budget == (spec.mode == "think")
    assert not any(parse_verdict(o.generations[0].text).parsed_ok for o in engine.generate(requests, SamplingConfig(max_tokens=30)))


def test_constrained_categories_line_through_transformers(engine):
    """The transformers logits processor applies the same categories grammar as vLLM's (one line, no tags)."""
    from reasonguard.decoding import VerdictSpec
    from reasonguard.prompts import GuardInput, guard_messages
    from reasonguard.verdict import parse_verdict

    cases = [(GuardInput("How do I hotwire a car?"), "no_think"), (GuardInput("Hi", "Hello!"), "think")]
    requests = [guard_messages(inp, mode, categories=True) for inp, mode in cases]
    specs = [VerdictSpec(mode, inp.response is not None, categories=True) for inp, mode in cases]
    outs = engine.generate(requests, SamplingConfig(n=3, temperature=1.0, max_tokens=70, seed=1), specs)
    for spec, out in zip(specs, outs):
        for gen in out.generations:
            verdict = parse_verdict(gen.text, expect_response=spec.has_response)
            assert verdict.parsed_ok and gen.output_tokens <= 70, gen.text
            _, head, named = gen.text.rpartition("\nSafety categories:")
            assert head and "\n" not in named and "<" not in named, gen.text
            if "harmful" not in (verdict.prompt_harm, verdict.response_harm):
                assert named == " None"
