"""Which examples become SFT rows, and in which mode: trace/labelled items, a seeded label-stratified
subset (the sample-efficiency sizes nest), and the dual-mode mix (only traced items can be `think`)."""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Literal, Sequence

from reasonguard.schema import GuardExample
from reasonguard.vocabulary import Mode, SftMode

Budget = Literal["full"] | int


def reasoning_column(budget: Budget) -> str:
    """The trace column of a budget: `reasoning` (full) or `reasoning_<N>` (N sentences)."""
    if budget == "full":
        return "reasoning"
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ValueError(f"budget must be 'full' or a positive number of sentences, got {budget!r}")
    return f"reasoning_{budget}"


@dataclass(frozen=True)
class SourceItem:
    """One labelled example and the trace chosen for it (None: no trace, so no_think only)."""

    example: GuardExample
    reasoning: str | None = None
    origin: str = "labelled"  # traces | labelled | topic_following


def _clean(text: Any) -> str | None:
    return text.strip() if isinstance(text, str) and text.strip() else None


def items_from_traces(rows: Sequence[dict], budget: Budget = "full") -> list[SourceItem]:
    """Trace rows (distill / shorten output) -> items; rows marked kept=false are skipped."""
    column = reasoning_column(budget)
    rows = [r for r in rows if r.get("kept", True) is not False]
    if rows and not any(column in r for r in rows):
        have = sorted(k for k in rows[0] if k.startswith("reasoning"))
        raise ValueError(f"budget {budget!r} needs the trace column {column!r}; the traces have {have}")
    return [SourceItem(GuardExample.from_row(r), _clean(r.get(column)), "traces") for r in rows]


def items_from_examples(examples: Iterable[GuardExample], origin: str = "labelled") -> list[SourceItem]:
    return [SourceItem(e, None, origin) for e in examples]


def label_key(item: SourceItem) -> tuple[str, str]:
    ex = item.example
    return (str(ex.prompt_harm_label), str(ex.response_harm_label) if ex.response is not None else "no_response")


def stratified_subset(items: Sequence[SourceItem], size: int, seed: int = 0,
                      key: Callable[[SourceItem], Any] = label_key) -> list[SourceItem]:
    """`size` items drawn at random, each label stratum in proportion (largest remainder), order kept.

    Each stratum is shuffled by its own seeded generator and cut, so a smaller subset of the
    same seed is (almost always) contained in a larger one: the sample-efficiency sizes nest.
    """
    if size < 1:
        raise ValueError(f"subset size must be >= 1, got {size}")
    if size >= len(items):
        return list(items)
    groups: dict[Any, list[int]] = defaultdict(list)
    for i, item in enumerate(items):
        groups[key(item)].append(i)
    keys = sorted(groups, key=str)
    quotas = {k: size * len(groups[k]) / len(items) for k in keys}
    alloc = {k: math.floor(q) for k, q in quotas.items()}
    for k in sorted(keys, key=lambda k: (-(quotas[k] - alloc[k]), str(k)))[: size - sum(alloc.values())]:
        alloc[k] += 1
    chosen: list[int] = []
    for k in keys:
        idx = list(groups[k])
        random.Random(f"{seed}:{k}").shuffle(idx)
        chosen += idx[: alloc[k]]
    return [items[i] for i in sorted(chosen)]


def assign_modes(items: Sequence[SourceItem], mode: SftMode, think_ratio: float = 0.5, seed: int = 0,
                 duplicate: bool = False) -> tuple[list[tuple[SourceItem, Mode]], Counter]:
    """(item, mode) pairs and counts of what was skipped. Only items with a trace can be `think`."""
    if mode not in ("think", "no_think", "dual"):
        raise ValueError(f"mode must be think, no_think or dual, got {mode!r}")
    if not 0 <= think_ratio <= 1:
        raise ValueError(f"think_ratio must be within [0, 1], got {think_ratio}")
    skipped: Counter = Counter()
    if mode == "no_think":
        return [(it, "no_think") for it in items], skipped
    traced = [i for i, it in enumerate(items) if it.reasoning]
    if mode == "think":
        skipped["no_trace"] = len(items) - len(traced)
        return [(items[i], "think") for i in traced], skipped
    if duplicate:
        think = set(traced)
    else:
        think = set(random.Random(seed).sample(traced, round(think_ratio * len(traced))))
    pairs: list[tuple[SourceItem, Mode]] = []
    for i, it in enumerate(items):
        if i in think:
            pairs.append((it, "think"))
        if i not in think or duplicate:
            pairs.append((it, "no_think"))
    return pairs, skipped
