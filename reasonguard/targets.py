"""SFT targets and chat examples: what the student learns to write in each mode."""

from __future__ import annotations

from typing import Sequence

from reasonguard.vocabulary import PolicyLike
from reasonguard.policy import Policy
from reasonguard.prompts import GuardInput, Mode, mode_flag, render_guard_prompt
from reasonguard.schema import GuardExample
from reasonguard.verdict import format_output


def build_target(prompt_harm: str, response_harm: str | None, mode: Mode, reasoning: str | None = None,
                 categories: Sequence[str] | None = None) -> str:
    """Reasoning target = think block + verdict lines; no-reasoning target = verdict lines only; with
    `categories` (codes; empty = none) the categories line follows the verdict lines. A benign answer
    names no category whatever the source labelled."""
    mode_flag(mode)  # validates the mode
    if prompt_harm not in ("harmful", "unharmful"):
        raise ValueError(f"prompt_harm must be 'harmful' or 'unharmful', got {prompt_harm!r}")
    if response_harm not in (None, "harmful", "unharmful"):
        raise ValueError(f"response_harm must be 'harmful', 'unharmful' or None, got {response_harm!r}")
    if mode == "think" and (not reasoning or not reasoning.strip()):
        raise ValueError("a reasoning ('think') target needs a non-empty reasoning trace")
    if categories is not None and "harmful" not in (prompt_harm, response_harm):
        categories = ()
    return format_output(prompt_harm, response_harm, reasoning if mode == "think" else None, categories)


def guard_input_of(example: GuardExample) -> GuardInput:
    history = example.extra.get("history") or ()
    from reasonguard.prompts import Turn

    turns = tuple(Turn(t["role"], t["content"]) for t in history if t.get("role") in ("user", "assistant"))
    return GuardInput(prompt=example.prompt, response=example.response, history=turns)


def policy_of(example: GuardExample, default: PolicyLike = None):
    """The example's own policy (topic-following data carries one), else the system turns of its
    conversation (a system prompt is the policy the assistant was held to: never silently dropped),
    else the default."""
    if example.extra.get("policy"):
        return example.extra["policy"]
    system = [t.get("content", "") for t in example.extra.get("history") or () if t.get("role") == "system"]
    system = [text for text in system if text and text.strip()]
    return "\n\n".join(system) if system else default


def build_chat_example(
    example: GuardExample,
    mode: Mode,
    reasoning: str | None = None,
    policy: PolicyLike = None,
    categories: Sequence[str] | None = None,
) -> list[dict]:
    """A two-turn chat (guard prompt, target) for SFT; labels come from the example's gold labels.
    `categories` (the example's Aegis codes) asks for and answers the categories line; None leaves it out."""
    if example.prompt_harm_label is None:
        raise ValueError(f"example {example.id} has no prompt_harm_label; it cannot be an SFT target")
    prompt = render_guard_prompt(guard_input_of(example), mode, policy_of(example, policy), categories is not None)
    target = build_target(example.prompt_harm_label, example.response_harm_label, mode, reasoning, categories)
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": target}]
