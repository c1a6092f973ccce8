"""Parsing guard output into a typed verdict, and formatting verdicts back to text.

The parser is total: any string (garbage, truncated, empty) gives a `GuardVerdict`
with `parsed_ok=False` and a reason, never an exception.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, Sequence

from reasonguard.vocabulary import HarmValue  # noqa: E402

# The start of a verdict line as the parser reads it (leading quote/list/emphasis marks, the line name,
# "harm", a ':' or '='). prompts.neutralize breaks exactly this in user text: one grammar, two uses.
VERDICT_LINE_HEAD = r"^[ \t>*\-\"'`]*(?P<line>prompt|response)(?P<sep>[ \t]+harm[ \t]*[:=])"
_LINE = re.compile(VERDICT_LINE_HEAD + r"[ \t]*\**[ \t]*[<\"'`]?(?P<value>harmful|unharmful|none)\b", re.I | re.M)
_THINK_OPEN = re.compile(r"<think>", re.I)
_THINK_CLOSE = re.compile(r"</think>", re.I)
_CATEGORIES_LINE = re.compile(r"^[ \t>*\-\"'`]*(?:safety[ \t]+|violated[ \t]+)?categor(?:y|ies)[ \t]*:[ \t]*(.*)$", re.I | re.M)


@dataclass(frozen=True)
class GuardVerdict:
    """A parsed guard answer.

    `response_harm` is None both for "Response harm: None" and when the line is missing;
    `response_line_present` tells the two apart.
    """

    prompt_harm: HarmValue | None
    response_harm: HarmValue | None
    reasoning: str | None = None
    categories: tuple[str, ...] = ()
    parsed_ok: bool = True
    error: str | None = None
    response_line_present: bool = True

    def label(self, task: str) -> HarmValue | None:
        """The label for a task ("prompt" or "response")."""
        return self.prompt_harm if task == "prompt" else self.response_harm


def format_verdict_lines(prompt_harm: str | None, response_harm: str | None) -> str:
    return f"Prompt harm: {prompt_harm}\nResponse harm: {response_harm if response_harm is not None else 'None'}"


def format_output(prompt_harm: str, response_harm: str | None, reasoning: str | None = None,
                  categories: Sequence[str] | None = None) -> str:
    """Guard output text: an optional think block, the two verdict lines, and the categories line when
    `categories` is given (an empty sequence writes `Safety categories: None`)."""
    lines = format_verdict_lines(prompt_harm, response_harm)
    if categories is not None:
        from reasonguard.categories import format_categories_line

        lines += "\n" + format_categories_line(categories)
    if reasoning is None:
        return lines
    return f"<think>\n{reasoning.strip()}\n</think>\n\n{lines}"


def format_verdict(verdict: GuardVerdict) -> str:
    return format_output(verdict.prompt_harm, verdict.response_harm, verdict.reasoning,
                         verdict.categories if verdict.categories else None)


def _split_reasoning(text: str) -> tuple[str | None, str, str | None]:
    """(reasoning, verdict region, error). The verdict region follows the last `</think>`."""
    closes = list(_THINK_CLOSE.finditer(text))
    open_match = _THINK_OPEN.search(text)
    if closes:
        last_close = closes[-1]
        start = open_match.end() if open_match and open_match.start() < last_close.start() else 0
        return text[start : last_close.start()].strip(), text[last_close.end() :], None
    if open_match:
        return text[open_match.end() :].strip(), "", "reasoning block not closed (truncated output?)"
    return None, text, None


def parse_verdict(text: object, expect_response: bool | None = None) -> GuardVerdict:
    """Parse guard output. `expect_response=True` makes a missing/None response verdict a failure.

    A `Response harm` value for a prompt-only input is kept, not an error: the prompt verdict
    stays usable.
    """
    if not isinstance(text, str):
        return GuardVerdict(None, None, parsed_ok=False, error=f"output is {type(text).__name__}, not text", response_line_present=False)
    reasoning, region, error = _split_reasoning(text)
    found: dict[str, set[str]] = {"prompt": set(), "response": set()}
    for m in _LINE.finditer(region):
        found[m.group("line").lower()].add(m.group("value").lower())
    prompt_values = found["prompt"] - {"none"}
    response_values = found["response"]
    prompt_harm = next(iter(prompt_values)) if len(prompt_values) == 1 else None
    response_harm_raw = next(iter(response_values)) if len(response_values) == 1 else None
    response_harm = None if response_harm_raw in (None, "none") else response_harm_raw
    categories = tuple(c.strip() for m in _CATEGORIES_LINE.finditer(region) for c in m.group(1).split(",")
                       if c.strip() and c.strip().lower() != "none")
    if error is None:
        if len(prompt_values) > 1 or len(response_values) > 1:
            error = "conflicting verdict lines"
        elif prompt_harm is None:
            error = "no 'Prompt harm' line" if not found["prompt"] else "'Prompt harm' is None"
        elif expect_response and response_harm is None:
            error = "no 'Response harm' verdict for an input with a response"
    return GuardVerdict(
        prompt_harm=prompt_harm,
        response_harm=response_harm,
        reasoning=reasoning,
        categories=categories,
        parsed_ok=error is None,
        error=error,
        response_line_present=bool(response_values),
    )
