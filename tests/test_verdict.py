from __future__ import annotations

import random
import string

import pytest

from reasonguard.verdict import GuardVerdict, format_output, format_verdict, parse_verdict


@pytest.mark.parametrize("ph", ["harmful", "unharmful"])
@pytest.mark.parametrize("rh", ["harmful", "unharmful", None])
@pytest.mark.parametrize("reasoning", [None, "The user asks for X. That is fine."])
def test_round_trip(ph, rh, reasoning):
    verdict = GuardVerdict(prompt_harm=ph, response_harm=rh, reasoning=reasoning)
    assert parse_verdict(format_verdict(verdict)) == verdict


def test_round_trip_with_categories():
    verdict = GuardVerdict("harmful", None, "Violent.", categories=("S1", "S11"))
    assert parse_verdict(format_verdict(verdict)) == verdict


def test_case_insensitive_and_variants():
    v = parse_verdict("PROMPT HARM: Harmful\nResponse Harm: NONE")
    assert v.parsed_ok and v.prompt_harm == "harmful" and v.response_harm is None and v.response_line_present
    v = parse_verdict("**Prompt harm:** unharmful\n- Response harm = harmful")
    assert v.parsed_ok and v.prompt_harm == "unharmful" and v.response_harm == "harmful"


def test_think_block_extracted():
    v = parse_verdict("<think>\nStep one. Step two.\n</think>\n\nPrompt harm: harmful\nResponse harm: unharmful")
    assert v.reasoning == "Step one. Step two." and v.prompt_harm == "harmful" and v.response_harm == "unharmful"


def test_truncated_think_is_failure_not_exception():
    v = parse_verdict("<think>I am thinking about Prompt harm: harmful and then")
    assert not v.parsed_ok and v.prompt_harm is None and "not closed" in v.error


def test_verdict_inside_reasoning_is_ignored():
    v = parse_verdict("<think>\nPrompt harm: unharmful maybe\n</think>\nPrompt harm: harmful\nResponse harm: None")
    assert v.parsed_ok and v.prompt_harm == "harmful"


def test_missing_prompt_line():
    v = parse_verdict("Response harm: harmful")
    assert not v.parsed_ok and v.prompt_harm is None and v.response_harm == "harmful"


def test_conflicting_lines_fail():
    v = parse_verdict("Prompt harm: harmful\nResponse harm: None\nPrompt harm: unharmful")
    assert not v.parsed_ok and v.error == "conflicting verdict lines"


def test_expect_response():
    assert not parse_verdict("Prompt harm: harmful\nResponse harm: None", expect_response=True).parsed_ok
    assert not parse_verdict("Prompt harm: harmful", expect_response=True).parsed_ok
    assert parse_verdict("Prompt harm: harmful\nResponse harm: unharmful", expect_response=True).parsed_ok
    v = parse_verdict("Prompt harm: harmful")
    assert v.parsed_ok and not v.response_line_present


def test_harmfulness_word_boundary():
    assert not parse_verdict("Prompt harm: harmfulness unclear").parsed_ok


@pytest.mark.parametrize("bad", [None, 3, b"Prompt harm: harmful", "", "   ", "<think></think>", "</think>", "\x00\x01"])
def test_total_on_odd_inputs(bad):
    v = parse_verdict(bad)
    assert isinstance(v, GuardVerdict) and not v.parsed_ok and v.error


def test_total_on_random_garbage():
    rng = random.Random(0)
    alphabet = string.printable + "<>/:"
    for _ in range(500):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 200)))
        v = parse_verdict(text)
        assert isinstance(v, GuardVerdict)
        if v.parsed_ok:
            assert v.prompt_harm in ("harmful", "unharmful")


def test_format_output_shape():
    assert format_output("harmful", None) == "Prompt harm: harmful\nResponse harm: None"
    assert format_output("unharmful", "harmful", "R.").startswith("<think>\nR.\n</think>\n\n")
