"""Verdict-safe decoding as a state machine: whatever a model picks where it is free, the answer
parses, fits the token budget and records its decisions (real SmolLM2 tokenizer, and a toy one)."""

from __future__ import annotations

import math
import random

import pytest

from reasonguard.decoding import (
    AFTER_CLOSE,
    FORCED_CLOSE,
    Branch,
    VerdictDecoder,
    VerdictSpec,
    VerdictVocabulary,
    pair_probability,
    replay,
    scores_from_logprobs,
)
from reasonguard.verdict import parse_verdict

SPECS = [VerdictSpec("think", True), VerdictSpec("think", False), VerdictSpec("no_think", True), VerdictSpec("no_think", False)]


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def vocab(tokenizer):
    return VerdictVocabulary.from_tokenizer(tokenizer)


def _run(vocab, spec, max_tokens, rng, close_after=None, vocab_size=49152):
    """A 'model' that writes random tokens where it is free (trying the stop ids too, which the
    constraint must ban), optionally writes '</think>' after `close_after` free tokens, and picks
    at random among what the constraint allows."""
    decoder = VerdictDecoder(vocab, spec, max_tokens)
    close = vocab.encode("</think>")
    ids: list[int] = []
    free = 0
    while not decoder.done and len(ids) < max_tokens:
        allowed = decoder.allowed()
        if allowed is not None:
            token = rng.choice(allowed)
        elif close_after is not None and free >= close_after and close and decoder.bans_stop:
            token = close.pop(0)
        else:
            token = rng.choice([vocab.eos_id, rng.randrange(vocab_size)])
            if decoder.bans_stop and token in vocab.stop_ids:
                continue  # the logits processor sets these to -inf: a real model cannot pick them
            if decoder.bans_markup and token in vocab.category_banned_ids():
                continue
            free += 1
        ids.append(token)
        decoder.advance(token)
    return decoder, ids


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.mode}-{'resp' if s.has_response else 'prompt'}")
def test_random_model_always_parses_within_budget(vocab, tokenizer, spec):
    rng = random.Random(0)
    for trial in range(40):
        max_tokens = vocab.min_max_tokens(spec) + rng.randrange(0, 60)
        close_after = rng.choice([None, 0, 3, 10])
        decoder, ids = _run(vocab, spec, max_tokens, rng, close_after)
        assert decoder.done and not decoder.broken
        assert len(ids) <= max_tokens
        assert ids[-1] == vocab.eos_id
        text = tokenizer.decode(ids, skip_special_tokens=True)
        verdict = parse_verdict(text, expect_response=spec.has_response)
        assert verdict.parsed_ok, (trial, text)
        if not spec.has_response:
            assert verdict.response_harm is None and "Response harm: None" in text
        assert [b.which for b in decoder.branches] == (["prompt", "response"] if spec.has_response else ["prompt"])
        if spec.mode == "think":
            assert text.startswith("<think>\n") and verdict.reasoning is not None
        else:
            assert text.startswith("Prompt harm: ")


CATEGORY_SPECS = [VerdictSpec(mode, resp, categories=True) for mode in ("think", "no_think") for resp in (True, False)]


@pytest.mark.parametrize("spec", CATEGORY_SPECS, ids=lambda s: f"{s.mode}-{'resp' if s.has_response else 'prompt'}")
def test_categories_line_follows_the_verdict_and_cannot_add_lines(vocab, tokenizer, spec):
    rng = random.Random(5)
    seen = set()
    for trial in range(40):
        max_tokens = vocab.min_max_tokens(spec) + rng.randrange(0, 40)
        decoder, ids = _run(vocab, spec, max_tokens, rng, rng.choice([None, 0, 4]))
        assert not decoder.broken and len(ids) <= max_tokens
        text = tokenizer.decode(ids, skip_special_tokens=True)
        verdict = parse_verdict(text, expect_response=spec.has_response)
        assert verdict.parsed_ok, (trial, text)
        head, _, line = text.rpartition("\nSafety categories:")
        assert head.endswith("Response harm: " + ("None" if not spec.has_response else verdict.response_harm)), text
        assert "\n" not in line, text  # the free part is one line: no second verdict line can follow
        harmful = "harmful" in (verdict.prompt_harm, verdict.response_harm)
        seen.add(harmful)
        if not harmful:
            assert line == " None" and decoder.done and ids[-1] == vocab.eos_id
    assert seen == {True, False}


def test_categories_are_off_unless_asked(vocab, tokenizer):
    decoder, ids = _run(vocab, VerdictSpec("no_think", True), 40, random.Random(6))
    assert "categories" not in tokenizer.decode(ids, skip_special_tokens=True).lower()
    assert vocab.min_max_tokens(VerdictSpec("no_think", True, True)) > vocab.min_max_tokens(VerdictSpec("no_think", True))


def test_budget_exhaustion_closes_the_think_block(vocab, tokenizer):
    spec = VerdictSpec("think", True)
    max_tokens = vocab.min_max_tokens(spec) + 7
    decoder, ids = _run(vocab, spec, max_tokens, random.Random(1), close_after=None)
    assert decoder.closed_by == "budget"
    text = tokenizer.decode(ids, skip_special_tokens=True)
    assert FORCED_CLOSE + "Prompt harm: " in text
    assert len(ids) <= max_tokens


def test_the_models_own_close_is_followed_by_the_verdict(vocab, tokenizer):
    spec = VerdictSpec("think", False)
    decoder, ids = _run(vocab, spec, 300, random.Random(2), close_after=2)
    assert decoder.closed_by == "model"
    text = tokenizer.decode(ids, skip_special_tokens=True)
    assert "</think>" + AFTER_CLOSE + "Prompt harm: " in text and text.count("</think>") == 1


def test_replay_records_the_same_decisions(vocab):
    spec = VerdictSpec("think", True)
    decoder, ids = _run(vocab, spec, 80, random.Random(3), close_after=5)
    again = replay(vocab, spec, 80, ids)
    assert again.branches == decoder.branches and again.closed_by == decoder.closed_by


def test_a_token_outside_the_constraint_breaks_instead_of_raising(vocab):
    decoder = VerdictDecoder(vocab, VerdictSpec("no_think", False), 30)
    bad = next(t for t in range(1000) if t not in decoder.allowed())
    decoder.advance(bad)
    assert decoder.broken and decoder.done and decoder.allowed() is None


def test_too_small_a_budget_is_known_up_front(vocab):
    assert vocab.min_max_tokens(VerdictSpec("think", True)) > vocab.min_max_tokens(VerdictSpec("no_think", True))
    assert vocab.min_max_tokens(VerdictSpec("no_think", False)) >= len(vocab.encode("Prompt harm: unharmful\nResponse harm: None")) + 1


class _CharTokenizer:
    """One token per character: the grammar must not depend on a BPE's word pieces."""

    def __init__(self):
        self.alphabet = sorted(set("<>/\n :abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"))

    def encode(self, text):
        return [self.alphabet.index(c) + 1 for c in text]

    def decode_one(self, token):
        return "" if token == 0 else self.alphabet[token - 1]


def test_character_level_tokenizer_decides_at_the_first_differing_character():
    tok = _CharTokenizer()
    vocab = VerdictVocabulary(tok.encode, tok.decode_one, eos_id=0)
    spec = VerdictSpec("no_think", True)
    decoder = VerdictDecoder(vocab, spec, 100)
    text = ""
    while not decoder.done:
        allowed = decoder.allowed()
        token = sorted(allowed)[-1] if len(allowed) > 1 else allowed[0]  # always the larger id
        decoder.advance(token)
        text += tok.decode_one(token)
    assert parse_verdict(text, expect_response=True).parsed_ok
    # "harmful" vs "unharmful" part at 'h' vs 'u' after "Prompt harm: "
    first = decoder.branches[0]
    assert first.which == "prompt" and {first.harmful_id, first.unharmful_id} == {tok.encode("h")[0], tok.encode("u")[0]}


def test_pair_probability_exact_and_bounded():
    p, exact = pair_probability(math.log(0.3), math.log(0.1))
    assert exact and p == pytest.approx(0.75)
    p, exact = pair_probability(math.log(0.3), None, floor=math.log(0.1))
    assert not exact and p == pytest.approx(0.75)  # the missing one is at most the floor: p is a lower bound
    assert pair_probability(None, None) == (None, False)
    assert pair_probability(float("-inf"), math.log(0.2))[0] == 0.0


def test_scores_from_logprobs_reads_the_decision_steps():
    branches = [Branch(step=2, which="prompt", harmful_id=7, unharmful_id=8), Branch(step=5, which="response", harmful_id=7, unharmful_id=9)]
    steps = [{1: -0.1}, {2: -0.2}, {7: math.log(0.2), 8: math.log(0.6), 3: math.log(0.1)}, {}, {}, {9: -0.5, 4: -2.0}]
    scores = scores_from_logprobs(branches, steps)
    assert scores.prompt == pytest.approx(0.25)
    assert scores.response == pytest.approx(1 / (1 + math.exp(-0.5 + 2.0)))  # 7 missing: bounded by the floor -2.0
    assert not scores.exact


def test_spec_round_trips_through_extra_args():
    spec = VerdictSpec("think", False)
    assert VerdictSpec.from_extra_args(spec.to_extra_args()) == spec
    assert VerdictSpec.from_extra_args(None) is None and VerdictSpec.from_extra_args({"other": 1}) is None


def test_the_fast_vocabulary_equals_the_transformers_one(tiny_model_dir, vocab):
    """Every process loads the vocabulary through `tokenizers` (no transformers import); it must
    make the same grammar as the transformers tokenizer does."""
    from reasonguard.engines.vocab import load_vocabulary

    fast = load_vocabulary(tiny_model_dir)
    assert fast.eos_id == vocab.eos_id and fast.think_open == vocab.think_open
    assert fast.decision_token_ids() == vocab.decision_token_ids()
    for spec in SPECS:
        assert fast.min_max_tokens(spec) == vocab.min_max_tokens(spec)
    rng = random.Random(5)
    for token in [rng.randrange(49152) for _ in range(300)] + vocab.encode("</think>"):
        assert fast.decode_one(token) == vocab.decode_one(token)
    spec = VerdictSpec("think", True)
    _, ids = _run(vocab, spec, 60, random.Random(6), close_after=4)
    assert replay(fast, spec, 60, ids).branches == replay(vocab, spec, 60, ids).branches
