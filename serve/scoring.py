"""P(harmful) from the verdict token's log-probabilities.

The guard writes `Prompt harm: harmful|unharmful` (and `Response harm: ...`). At the position where
the harm word starts, the model's top-k candidates hold the first token of "harmful" and of
"unharmful" (" harmful" vs " un" for a byte-level BPE); normalising the two masses gives a
probability that a threshold can trade precision for recall with, where the bare verdict cannot.

The engine reports, per generated position, {token text: logprob} of the top-k candidates plus the
sampled token, but not which one was sampled; the sampled path is recovered by aligning candidate
texts with the output text (a small search, since two candidates can both be prefixes).
Everything here is pure and total: odd output gives None, never an exception.
"""

from __future__ import annotations

import math
from typing import Sequence

from reasonguard.verdict import _LINE as VERDICT_LINE  # the parser's own line pattern: one source of truth
from reasonguard.verdict import _THINK_CLOSE

TopLogprobs = Sequence[dict[str, float]]
_WORDS = ("harmful", "unharmful")


def verdict_word_offsets(text: str) -> dict[str, int]:
    """{'prompt'|'response': character offset of the first harm word} in the verdict region.

    The region is what `parse_verdict` reads: after the last `</think>`, so verdict-like lines
    inside the reasoning are never scored. 'none' values are skipped (nothing to score).
    """
    closes = list(_THINK_CLOSE.finditer(text))
    start = closes[-1].end() if closes else 0
    offsets: dict[str, int] = {}
    for m in VERDICT_LINE.finditer(text, start):
        which, word = m.group("line").lower(), m.group("value").lower()
        if word in _WORDS and which not in offsets:
            offsets[which] = m.start("value")
    return offsets


def align(text: str, steps: TopLogprobs, until: int) -> list[int] | None:
    """Start offsets of the sampled tokens, far enough to cover character `until`, or None.

    Depth-first over candidates that continue the text (likeliest first); `seen` bounds the
    search to one visit per (step, offset), so it is linear in practice.
    """
    stack: list[tuple[int, int, list[int]]] = [(0, 0, [])]
    seen: set[tuple[int, int]] = set()
    while stack:
        step, pos, starts = stack.pop()
        if pos > until:
            return starts
        if step >= len(steps) or (step, pos) in seen:
            continue
        seen.add((step, pos))
        options = [t for t in sorted(steps[step], key=lambda t: steps[step][t]) if text.startswith(t, pos)]
        # Pushed least likely first so the likeliest is tried first; empty tokens (partial bytes) last.
        options.sort(key=lambda t: t != "")
        for token in options:
            stack.append((step + 1, pos + len(token), starts + [pos]))
    return None


def harm_probability(text: str, steps: TopLogprobs | None, word_offset: int) -> float | None:
    """P(harmful) at the harm word starting at `word_offset`, from the candidates at that position."""
    if not steps:
        return None
    starts = align(text, steps, word_offset)
    if starts is None:
        return None
    idx = max(i for i, s in enumerate(starts) if s <= word_offset)
    lead = text[starts[idx] : word_offset]  # e.g. " " when the token is " harmful"
    mass = {"harmful": 0.0, "unharmful": 0.0}
    for token, logprob in steps[idx].items():
        if not token.startswith(lead) or not math.isfinite(logprob):
            continue
        rest = token[len(lead) :].lower()
        if not rest or not rest[0].isalpha():
            continue
        for word in _WORDS:
            if word.startswith(rest) or (rest.startswith(word) and not rest[len(word) :][:1].isalpha()):
                mass[word] += math.exp(logprob)
    total = mass["harmful"] + mass["unharmful"]
    return mass["harmful"] / total if total > 0 else None


def verdict_scores(text: str, steps: TopLogprobs | None) -> dict[str, float | None]:
    """{'prompt': P(harmful) | None, 'response': P(harmful) | None} for one generation."""
    offsets = verdict_word_offsets(text)
    return {which: harm_probability(text, steps, offsets[which]) if which in offsets else None for which in ("prompt", "response")}

