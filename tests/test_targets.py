from __future__ import annotations

import pytest

from reasonguard.prompts import mode_of_prompt
from reasonguard.schema import GuardExample
from reasonguard.targets import build_chat_example, build_target
from reasonguard.verdict import parse_verdict


def test_reasoning_target_is_think_plus_verdict():
    target = build_target("harmful", None, "think", "It asks for weapons.")
    assert target == "<think>\nIt asks for weapons.\n</think>\n\nPrompt harm: harmful\nResponse harm: None"
    v = parse_verdict(target)
    assert v.parsed_ok and v.reasoning == "It asks for weapons."


def test_no_reasoning_target_is_verdict_only():
    target = build_target("unharmful", "unharmful", "no_think", "ignored reasoning")
    assert target == "Prompt harm: unharmful\nResponse harm: unharmful"
    assert "<think>" not in target


def test_think_target_needs_reasoning():
    with pytest.raises(ValueError, match="reasoning"):
        build_target("harmful", None, "think", "  ")


def test_bad_labels_rejected():
    with pytest.raises(ValueError):
        build_target("toxic", None, "no_think")
    with pytest.raises(ValueError):
        build_target("harmful", "maybe", "no_think")


def test_chat_example_uses_example_policy_and_mode():
    ex = GuardExample(
        id="t:1", source="t", prompt="What about taxes?", prompt_harm_label="harmful",
        extra={"policy": "Only talk about travel.", "history": [{"role": "user", "content": "Trip to Rome?"}]},
    )
    chat = build_chat_example(ex, "think", reasoning="Taxes are off-topic for a travel bot.")
    assert chat[0]["role"] == "user" and chat[1]["role"] == "assistant"
    assert "Only talk about travel." in chat[0]["content"]
    assert "User: Trip to Rome?" in chat[0]["content"]
    assert mode_of_prompt(chat[0]["content"]) == "think"
    assert parse_verdict(chat[1]["content"]).prompt_harm == "harmful"


def test_chat_example_without_label_rejected():
    with pytest.raises(ValueError, match="prompt_harm_label"):
        build_chat_example(GuardExample(id="a", source="s", prompt="p"), "no_think")
