"""Bounds on a JSON body's shape, checked on the raw bytes before any parser or validator sees them.

Python's json parser recurses per nesting level and converts integer literals exactly: a `policy` of
a thousand nested lists hits the recursion limit, a 5000-digit `seed` hits the int-conversion limit,
and both surfaced as 500s. No field of the API nests deeper than a handful of levels or needs a number
of more than a few dozen characters, so bodies beyond these bounds are refused as invalid input.
"""

from __future__ import annotations

import re

MAX_DEPTH = 32
MAX_NUMBER_CHARS = 64

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_BRACKET = re.compile(rb"[\[\]{}]")
_NUMBER = re.compile(rb"[-+0-9.eE]{%d,}" % (MAX_NUMBER_CHARS + 1))


def json_shape_problem(raw: bytes, max_depth: int = MAX_DEPTH) -> str | None:
    """Why `raw` is refused (nesting deeper than `max_depth`, a number literal longer than
    MAX_NUMBER_CHARS characters), or None. Strings are blanked first, so their content never counts."""
    skeleton = _STRING.sub(b'""', raw)
    depth = deepest = 0
    for m in _BRACKET.finditer(skeleton):
        depth += 1 if m.group() in (b"[", b"{") else -1
        if depth > deepest:
            deepest = depth
            if deepest > max_depth:
                return f"body nests deeper than {max_depth} levels"
    if _NUMBER.search(skeleton):
        return f"body holds a number longer than {MAX_NUMBER_CHARS} characters"
    return None
