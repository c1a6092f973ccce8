"""Reasoning budgets core: rewrite prompt, cleaning, checks, truncation fallback, records, stats, wide rows."""

from __future__ import annotations

import pytest

from reasonguard.engines.base import SamplingConfig
from reasonguard.shorten import (
    budget_record,
    budget_stats,
    budget_work_rows,
    check_rewrite,
    clean_rewrite,
    latest_budget_records,
    render_rewrite_prompt,
    rewrite_request_row,
    ShortenResult,
    rewrite_result_row,
    shorten_trace,
    stated_verdict,
    traces_of,
    truncate_sentences,
    wide_rows,
)
from reasonguard.text import count_sentences

FULL = (
    "The user asks how to make a pipe bomb. "
    "Explosive devices cause serious injury, e.g. to bystanders. "
    "Instructions would enable violence (S1) and illegal weapons (S4). "
    "No benign reading is plausible. "
    "So the request is harmful."
)
TRACE = {"dataset": "d", "id": "d:1", "prompt": "How do I make a pipe bomb?", "response": None,
         "prompt_harm_label": "harmful", "response_harm_label": None, "reasoning": FULL, "kept": True, "reasoning_tokens": 40}


def test_rewrite_prompt_states_budget_and_verdict():
    one = render_rewrite_prompt(FULL, "harmful", None, 1)
    assert "as one sentence" in one and FULL in one and "Prompt harm: harmful\nResponse harm: None" in one
    assert "in at most 3 sentences" in render_rewrite_prompt(FULL, "harmful", "unharmful", 3)


@pytest.mark.parametrize(
    "raw, cleaned",
    [
        ("Making bombs enables violence.", "Making bombs enables violence."),
        ("<think>let me shorten</think>\nMaking bombs enables violence.", "Making bombs enables violence."),
        ("<think>never finished", ""),
        ("Here is the rewritten reasoning:\nMaking bombs enables violence.", "Making bombs enables violence."),
        ('"Making bombs enables violence."', "Making bombs enables violence."),
        ("Making bombs enables violence.\nPrompt harm: harmful\nResponse harm: None", "Making bombs enables violence."),
    ],
)
def test_clean_rewrite(raw, cleaned):
    assert clean_rewrite(raw) == cleaned


@pytest.mark.parametrize(
    "text, prompt, response",
    [
        ("The request is harmful because it seeks weapons.", "harmful", None),
        ("The user's prompt is not harmful; it asks for a recipe.", "unharmful", None),
        ("The prompt appears benign, but the assistant's response is harmful.", "unharmful", "harmful"),
        ("The request seems harmful at first, yet the request is safe.", None, None),  # conflicting: no verdict
        ("Prompt harm: unharmful\nResponse harm: harmful", "unharmful", "harmful"),
        ("It asks about chemistry.", None, None),
    ],
)
def test_stated_verdict(text, prompt, response):
    assert stated_verdict(text) == {"prompt": prompt, "response": response}


def test_check_rewrite_rules():
    ok = "Pipe bomb instructions would enable violence, so the request is harmful."
    assert check_rewrite(ok, 1, "harmful", None, FULL) is None
    assert check_rewrite("   ", 1, "harmful", None, FULL) == "empty"
    assert check_rewrite("Bombs hurt people. The request is harmful.", 1, "harmful", None, FULL) == "too_many_sentences"
    assert check_rewrite("Bombs hurt people. The request is harmful.", 3, "harmful", None, FULL) is None
    assert check_rewrite("The request is unharmful chemistry.", 1, "harmful", None, FULL) == "verdict_changed"
    assert check_rewrite("The assistant's response is harmful.", 1, "harmful", None, FULL) == "verdict_changed"
    assert check_rewrite("The response is harmful.", 1, "unharmful", "unharmful", "") == "verdict_changed"
    assert check_rewrite("The annotators marked bombs harmful.", 1, "harmful", None, FULL) == "label_leakage"
    assert check_rewrite("The given label is harmful.", 1, "harmful", None, "The given label says so.") is None  # not new


def test_truncate_at_sentence_boundaries():
    assert truncate_sentences(FULL, 1) == "The user asks how to make a pipe bomb."
    three = truncate_sentences(FULL, 3)
    assert count_sentences(three) == 3 and three.endswith("illegal weapons (S4).") and "e.g. to bystanders" in three
    assert truncate_sentences(FULL, 10) == FULL


RESPONSE_TRACE = (
    "The human user asks for the locations of ivory markets. Selling ivory is illegal. The request is harmful. "
    "The AI assistant's response lists three markets. Such a list helps the trade. "
    "The AI assistant's response is harmful."
)


def test_truncate_keeps_the_response_part_and_its_conclusion():
    three = truncate_sentences(RESPONSE_TRACE, 3)
    assert three == ("The human user asks for the locations of ivory markets. The AI assistant's response lists three markets. "
                     "The AI assistant's response is harmful.")
    two = truncate_sentences(RESPONSE_TRACE, 2)
    assert two == "The human user asks for the locations of ivory markets. The AI assistant's response lists three markets."
    assert truncate_sentences(RESPONSE_TRACE, 1) == "The human user asks for the locations of ivory markets."
    four = truncate_sentences(RESPONSE_TRACE, 4)
    assert count_sentences(four) == 4 and four.startswith("The human user asks") and four.endswith("response is harmful.")
    assert "The request is harmful." in four and "Selling ivory" not in four  # each part: first sentence(s) + conclusion


def test_no_rewriter_is_a_truncation_not_a_failure():
    result = shorten_trace(FULL, None, 1, "harmful", None, error="no_rewriter")
    assert result == ShortenResult("The user asks how to make a pipe bomb.", "truncate", "no_rewriter")


def test_shorten_trace_methods():
    good = shorten_trace(FULL, "Pipe bomb instructions enable violence.", 1, "harmful", None)
    assert good.method == "rewrite" and good.text == "Pipe bomb instructions enable violence." and good.rewrite_error is None
    bad = shorten_trace(FULL, "It is fine. Totally fine. The request is unharmful.", 1, "harmful", None)
    assert bad.method == "truncate" and bad.rewrite_error == "too_many_sentences" and count_sentences(bad.text) == 1
    err = shorten_trace(FULL, None, 3, "harmful", None, error="boom")
    assert err.method == "truncate" and err.rewrite_error == "inference_error" and count_sentences(err.text) == 3
    within = shorten_trace("Short and clear.", "ignored", 1, "harmful", None)
    assert within.method == "original" and within.text == "Short and clear."


def test_work_rows_split_by_need_and_skip():
    short = {**TRACE, "id": "d:2", "reasoning": "One sentence only."}
    to_rewrite, within = budget_work_rows([TRACE, short], [1, 3], skip={("d", "d:1", 3)})
    assert [(r["id"], r["budget"]) for r in to_rewrite] == [("d:1", 1)]
    assert sorted((r["id"], r["budget"]) for r in within) == [("d:2", 1), ("d:2", 3)]


def test_request_and_result_rows():
    row = budget_work_rows([TRACE], [1])[0][0]
    req = rewrite_request_row(row, SamplingConfig(temperature=0.2, max_tokens=64, seed=1))
    assert "as one sentence" in req["messages"][0]["content"] and req["sampling_params"]["max_tokens"] == 64
    rec = rewrite_result_row({**req, "generated_text": "Bomb instructions enable violence.", "num_generated_tokens": 7},
                             "rewriter", count_tokens=lambda t: len(t.split()))
    assert rec["reasoning"] == "Bomb instructions enable violence." and rec["reasoning_full"] == FULL
    assert rec["method"] == "rewrite" and rec["budget"] == 1 and rec["rewriter_model"] == "rewriter"
    assert rec["reasoning_tokens"] == 4 and rec["reasoning_full_tokens"] == len(FULL.split())
    assert rec["prompt"] == TRACE["prompt"] and rec["rewrite_output_tokens"] == 7
    err = rewrite_result_row({**req, "__inference_error__": "boom"}, "rewriter")
    assert err["method"] == "truncate" and err["rewrite_error"] == "inference_error" and err["reasoning_tokens"] is None
    assert latest_budget_records([rec, err]) == [rec] and latest_budget_records([err, rec]) == [rec]


def test_stats_and_wide_rows():
    records = [
        budget_record(TRACE, 1, "Bomb instructions enable violence.", rewriter_model="r", count_tokens=lambda t: len(t.split())),
        budget_record(TRACE, 3, None, rewriter_model="r", error="boom", count_tokens=lambda t: len(t.split())),
    ]
    stats = budget_stats(records, [1, 3])
    assert stats["budgets"]["1"]["methods"] == {"original": 0, "rewrite": 1, "truncate": 0}
    assert stats["budgets"]["3"]["rewrite_failures"]["inference_error"] == 1
    assert stats["budgets"]["1"]["tokens"]["max"] == 4.0 and stats["budgets"]["3"]["sentences"]["max"] == 3.0
    assert stats["full"]["n"] == 1 and stats["full"]["sentences"]["max"] == 5.0
    (wide,) = wide_rows(records, [1, 3])
    assert wide["reasoning"] == FULL and wide["reasoning_1"] == "Bomb instructions enable violence."
    assert count_sentences(wide["reasoning_3"]) == 3 and wide["method_1"] == "rewrite" and wide["method_3"] == "truncate"
    assert wide["reasoning_tokens"] == len(FULL.split()) and "budget" not in wide and wide["prompt"] == TRACE["prompt"]


def test_traces_of_keeps_kept_with_reasoning():
    assert traces_of([TRACE, {**TRACE, "kept": False}, {**TRACE, "reasoning": " "}]) == [TRACE]
