"""P(harmful) from verdict-token log-probabilities, on crafted candidates (pure)."""

from __future__ import annotations

import math
import random

import pytest
from conftest import steps_for, tokens_of

from serve.scoring import align, harm_probability, verdict_scores, verdict_word_offsets


def test_prompt_score_is_the_normalised_first_token_mass():
    text = "Prompt harm: harmful\nResponse harm: None"
    scores = verdict_scores(text, steps_for(text, {"prompt": 0.7}))
    assert scores["prompt"] == pytest.approx(0.7)
    assert scores["response"] is None  # 'None' is not scored


def test_unharmful_verdict_with_response():
    text = "Prompt harm: unharmful\nResponse harm: harmful"
    scores = verdict_scores(text, steps_for(text, {"prompt": 0.2, "response": 0.95}))
    assert scores == {"prompt": pytest.approx(0.2), "response": pytest.approx(0.95)}


def test_lines_inside_reasoning_are_not_scored():
    text = "<think>\nPrompt harm: harmful, the user might think.\n</think>\n\nPrompt harm: unharmful\nResponse harm: None"
    steps = list(steps_for(text, {"prompt": 0.3}))
    # The reasoning's fake verdict word gets an extreme distribution; it must not be the one scored.
    first = tokens_of(text).index(" harmful")
    steps[first] = {" harmful": math.log(0.99), " un": math.log(0.01)}
    assert verdict_word_offsets(text)["prompt"] > text.index("</think>")
    assert verdict_scores(text, steps)["prompt"] == pytest.approx(0.3)


def test_word_split_after_a_space_token():
    text = "Prompt harm: harmful"
    steps = [{"Prompt": -0.1}, {" harm": -0.1}, {":": -0.1}, {" ": -0.1, " un": -5.0}, {"harm": math.log(0.6), "un": math.log(0.2), "harmful": math.log(0.1)}, {"ful": -0.1}]
    # At the word's own position: 'harm' + 'harmful' (both start "harmful") vs 'un'.
    assert verdict_scores(text, steps)["prompt"] == pytest.approx(0.7 / 0.9)


def test_alignment_backtracks_over_ambiguous_prefixes():
    text = "Prompt harm: harmful!"
    # ' harm' is likelier than ' harmful' at step 3, but only ' harmful' lets '!' follow.
    steps = [{"Prompt": -0.1}, {" harm": -0.1}, {":": -0.1},
             {" harm": math.log(0.5), " harmful": math.log(0.4), " un": math.log(0.1)}, {"!": -0.1}]
    assert align(text, steps, len(text) - 1) == [0, 6, 11, 12, 20]
    assert verdict_scores(text, steps)["prompt"] == pytest.approx(0.9)


def test_case_and_longer_words():
    text = "Prompt harm: Harmful"
    steps = [{"Prompt": 0.0}, {" harm": 0.0}, {":": 0.0}, {" Harmful": math.log(0.5), " harmless": math.log(0.3), " unharmful": math.log(0.2)}]
    assert verdict_scores(text, steps)["prompt"] == pytest.approx(0.5 / 0.7)  # 'harmless' is neither word


@pytest.mark.parametrize(
    "text, steps",
    [
        ("Prompt harm: harmful", None),                                   # no logprobs requested
        ("no verdict here", ({"no": 0.0},)),                              # nothing to score
        ("Prompt harm: harmful", ({"garbage": 0.0},) * 5),                # candidates do not spell the text
        ("Prompt harm: harmful", ({"Prompt": 0.0}, {" harm": 0.0})),      # logprobs shorter than the text
        ("Prompt harm: harmful", tuple({t: -math.inf} for t in tokens_of("Prompt harm: harmful"))),  # no finite mass
    ],
)
def test_unscorable_outputs_give_none(text, steps):
    assert verdict_scores(text, steps)["prompt"] is None


def test_total_on_random_input():
    rng = random.Random(0)
    alphabet = ["Prompt", " harm", ":", " harmful", " un", "harmful", "\n", "<think>", "</think>", " ", "x", ""]
    for _ in range(500):
        toks = [rng.choice(alphabet) for _ in range(rng.randint(0, 12))]
        text = "".join(toks)
        steps = [{rng.choice(alphabet): -rng.random() * 5 for _ in range(rng.randint(0, 4))} for _ in range(rng.randint(0, 14))]
        for value in verdict_scores(text, steps).values():
            assert value is None or 0.0 <= value <= 1.0
        value = harm_probability(text, steps, rng.randint(0, max(len(text) - 1, 0)))
        assert value is None or 0.0 <= value <= 1.0
