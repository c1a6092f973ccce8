"""The released model's template: our rendering against the checked-in reference, and every
published variant read the same way (tests/golden/REFERENCE.md)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from reasonguard.prompts import GuardInput, mode_of_prompt, render_guard_prompt

GOLDEN = Path(__file__).resolve().parent / "golden"
CARD_PROMPT = "How can I shoplift from a store without getting caught?"
CARD_RESPONSE = "I can't help with that. Shoplifting is illegal and unethical."
VARIANTS = {
    "variant_api_catalog_think.txt": "think",
    "variant_nemo_guardrails_think.txt": "think",
    "variant_nemo_appended_no_think.txt": "no_think",
    "reference_model_card_think.txt": "think",
}


def _read(name: str) -> str:
    return (GOLDEN / name).read_text(encoding="utf-8")


def test_rendering_equals_the_model_card_reference():
    text = render_guard_prompt(GuardInput(CARD_PROMPT, CARD_RESPONSE), "think")
    assert text == _read("reference_model_card_think.txt")


def test_the_three_differences_from_the_old_rendering():
    text = _read("reference_model_card_think.txt")
    assert "is harmful.\nTaxonomy:" in text  # a single newline after the role paragraph
    assert "about the request and\nresponse. If there is no response" in text
    assert text.endswith('as None. /think') and "\n/think" not in text


def test_api_catalog_example_differs_only_by_its_whitespace_line():
    api = _read("variant_api_catalog_think.txt")
    assert "\n   \nS1: Violence." in api
    assert re.sub(r"(?m)^[ \t]+$", "", api) == _read("reference_model_card_think.txt")


@pytest.mark.parametrize(("name", "mode"), sorted(VARIANTS.items()))
def test_every_published_variant_gives_its_mode(name, mode):
    assert mode_of_prompt(_read(name)) == mode


def test_no_think_rendering_matches_the_reference_but_for_the_flag():
    text = render_guard_prompt(GuardInput(CARD_PROMPT, CARD_RESPONSE), "no_think")
    assert text == _read("reference_model_card_think.txt").replace(" /think", " /no_think")


def test_serve_plans_every_variant_alike(tiny_model_dir):
    """/v1/chat/completions (what NeMo Guardrails calls) gives each published variant the same mode,
    token budget and verdict constraint: a response is judged in all of them."""
    from reasonguard.config.serve import ServeConfig
    from reasonguard.decoding import VerdictSpec
    from reasonguard.engines.base import FakeEngine
    from reasonguard.engines.vocab import load_vocabulary
    from serve.guard import GuardServer
    from serve.schemas import ChatCompletionRequest

    engine = FakeEngine(lambda messages, i: "Prompt harm: harmful\nResponse harm: harmful")
    engine.vocab = load_vocabulary(tiny_model_dir)  # what a vLLM/transformers engine carries
    config = ServeConfig.model_validate({"engine": {"kind": "vllm", "model": "fake"}, "replica": {"num_replicas": 1}})
    server = GuardServer(engine, config)
    plans = {name: server.plan_chat(ChatCompletionRequest(model="fake", messages=[{"role": "user", "content": _read(name)}]))
             for name in VARIANTS}
    for name, mode in VARIANTS.items():
        plan = plans[name]
        assert plan.mode == mode and plan.job.verdict == VerdictSpec(mode, has_response=True)
    assert len({p.job.sampling for n, p in plans.items() if VARIANTS[n] == "think"}) == 1
    assert plans["variant_nemo_appended_no_think.txt"].job.sampling.max_tokens < plans["variant_api_catalog_think.txt"].job.sampling.max_tokens
