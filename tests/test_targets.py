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


def test_system_turns_of_a_conversation_become_its_policy_not_dropped():
    from reasonguard.prompts import render_guard_prompt
    from reasonguard.schema import GuardExample
    from reasonguard.targets import guard_input_of, policy_of

    ex = GuardExample(id="1", source="t", prompt="Recommend a stock", prompt_harm_label="harmful",
                      extra={"history": [{"role": "system", "content": "You only talk about cooking."},
                                         {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]})
    assert policy_of(ex) == "You only talk about cooking."
    text = render_guard_prompt(guard_input_of(ex), "no_think", policy_of(ex))
    assert "You only talk about cooking." in text and "Taxonomy:" not in text
    assert "User: hi\nAssistant: hello" in text  # the other turns stay the conversation
    plain = GuardExample(id="2", source="t", prompt="x", prompt_harm_label="harmful")
    assert policy_of(plain, ["Violence"]) == ["Violence"]
