"""Plain-text helpers shared by distillation and reasoning budgets: sentences, words, length statistics.

A budget of "at most N sentences" is only as good as the sentence splitter, so it must not cut
at "e.g.", "Dr.", "U.S.", "3.5" or a list number, and must treat each line of a list as its own
sentence.
"""

from __future__ import annotations

import math
import re
from typing import Iterable

# Abbreviations that never end a sentence (compared lowercase, without the final dot).
NEVER_FINAL = frozenset(
    "e.g i.e cf vs mr mrs ms dr prof sr jr st fig figs approx al no nos vol pp ca esp incl viz".split()
)
# Abbreviations that may end a sentence: a boundary only when the next word is capitalised.
MAYBE_FINAL = frozenset("etc inc ltd co corp jr".split())

_BOUNDARY = re.compile(r"[.!?\u2026]+[\"'\u201d\u2019)\]]*(?=\s|$)")
_LAST_TOKEN = re.compile(r"(\S+)$")
_WORD = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*", re.UNICODE)
_INITIALISM = re.compile(r"^(?:[a-z]\.)+[a-z]$", re.I)  # e.g, i.e, u.s, a.m (final dot already cut)
_ALNUM = re.compile(r"[^\W_]", re.UNICODE)


def _is_boundary(line: str, start: int, match: re.Match[str]) -> bool:
    punct = match.group()
    if "!" in punct or "?" in punct:
        return True
    before = line[start : match.start()]
    token_match = _LAST_TOKEN.search(before)
    if token_match is None:  # punctuation alone (". . ."): not a sentence of its own
        return False
    token = token_match.group(1).lstrip("([{\"'\u201c\u2018").lower()
    following = line[match.end() :].lstrip()[:1]
    next_capital = following == "" or following.isupper() or following.isdigit() or following in "\"'\u201c([-*"
    if token in NEVER_FINAL or _INITIALISM.match(token):
        return False
    if len(token) == 1 and token.isalpha() and token_match.group(1)[-1:].isupper():
        return False  # an initial ("J. Smith")
    if token.isdigit() and len(token) <= 2:
        lead = before[: token_match.start()].rstrip()
        if not lead or lead.endswith(":"):
            return False  # a list number starting a segment ("1. The user ...", "Steps: 1. Ask")
    if token in MAYBE_FINAL or "." in punct[1:] or "\u2026" in punct:
        return next_capital  # "etc." / an ellipsis ends a sentence only before a capital
    return True


def split_sentences(text: str | None) -> list[str]:
    """Sentences of `text`, stripped; a line break always ends a sentence (lists, headings).

    Fragments without any letter or digit (a stray "..." or "-") join the sentence before them.
    """
    out: list[str] = []
    for line in (text or "").splitlines():
        line = line.strip()
        start = 0
        pieces: list[str] = []
        for m in _BOUNDARY.finditer(line):
            if _is_boundary(line, start, m):
                pieces.append(line[start : m.end()].strip())
                start = m.end()
        pieces.append(line[start:].strip())
        for piece in pieces:
            if not piece:
                continue
            if _ALNUM.search(piece) or not out:
                out.append(piece)
            else:
                out[-1] = f"{out[-1]} {piece}"
    return [s for s in out if _ALNUM.search(s)]


def count_sentences(text: str | None) -> int:
    return len(split_sentences(text))


def words(text: str | None) -> list[str]:
    """Lowercased word tokens (letters/digits, inner apostrophes kept)."""
    return _WORD.findall((text or "").lower())


def word_count(text: str | None) -> int:
    return len(words(text))


def length_stats(values: Iterable[int | float | None]) -> dict[str, float | int]:
    """n, mean, p50, p90, max (nearest-rank percentiles) of the non-missing values; zeros when empty."""
    vals = sorted(float(v) for v in values if v is not None)
    if not vals:
        return {"n": 0, "mean": 0.0, "p50": 0.0, "p90": 0.0, "max": 0.0}

    def pct(q: float) -> float:
        return vals[max(0, math.ceil(q * len(vals)) - 1)]

    return {"n": len(vals), "mean": round(sum(vals) / len(vals), 2), "p50": pct(0.5), "p90": pct(0.9), "max": vals[-1]}
