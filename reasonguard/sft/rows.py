"""SFT rows: the chosen items rendered as chats (the example's columns, mode, trace and policy kept next
to the rendered `messages`, so the trainer can re-render a shortened version of an example)."""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

from reasonguard.categories import aegis_codes
from reasonguard.hygiene import fingerprint
from reasonguard.schema import GuardExample
from reasonguard.sft.select import Budget, SourceItem, assign_modes, stratified_subset
from reasonguard.targets import build_chat_example
from reasonguard.vocabulary import Mode, SftMode


def sft_row(item: SourceItem, mode: Mode, policy=None, budget: Budget = "full",
            categories: Sequence[str] | None = None) -> dict:
    """A flat, Arrow-friendly SFT row: the example's columns, its mode and trace, and the rendered chat.
    `categories` (Aegis codes) makes the row ask for and answer the categories line (`category_codes`)."""
    reasoning = item.reasoning if mode == "think" else None
    messages = build_chat_example(item.example, mode, reasoning=reasoning, policy=policy, categories=categories)
    return {
        **item.example.to_row(),
        "key": f"{item.example.id}|{mode}",
        "origin": item.origin,
        "mode": mode,
        "budget": str(budget) if mode == "think" else None,
        "reasoning": reasoning,
        "policy": json.dumps(policy),
        "category_codes": None if categories is None else list(categories),
        "messages": messages,
    }


@dataclass
class SftBuildResult:
    rows: list[dict]
    stats: dict[str, Any] = field(default_factory=dict)


def build_sft_rows(
    traces: Sequence[SourceItem] = (),
    labelled: Sequence[SourceItem] = (),
    *,
    mode: SftMode = "dual",
    think_ratio: float = 0.5,
    duplicate: bool = False,
    budget: Budget = "full",
    subset_size: int | None = None,
    topic_following: Sequence[SourceItem] = (),
    topic_size: int | None = None,
    policy=None,
    seed: int = 0,
    held_out: frozenset[str] | set[str] = frozenset(),
    categories_ratio: float | None = None,
) -> SftBuildResult:
    """Traces first, then labelled data (an id already seen is skipped), subset, modes, topic mix, shuffle.

    `held_out`: prompt fingerprints (reasonguard.hygiene) of test sets; examples whose prompt is among
    them never become training rows (counted as skipped `held_out`).
    `categories_ratio`: that share of the rows whose categories are known (`category_codes_of`) ask for
    the categories line (seeded); None = no row does."""
    skipped: Counter = Counter()
    seen: set[str] = set()
    pool: list[SourceItem] = []
    for item in [*traces, *labelled]:
        if held_out and fingerprint(item.example.prompt) in held_out:
            skipped["held_out"] += 1
        elif item.example.prompt_harm_label is None:
            skipped["no_prompt_label"] += 1
        elif item.example.id in seen:
            skipped["duplicate_id"] += 1
        else:
            seen.add(item.example.id)
            pool.append(item)
    if subset_size is not None:
        pool = stratified_subset(pool, subset_size, seed)
    pairs, mode_skips = assign_modes(pool, mode, think_ratio, seed, duplicate)
    skipped.update(mode_skips)
    topic = [t for t in topic_following if not (held_out and fingerprint(t.example.prompt) in held_out)]
    skipped["held_out"] += len(topic_following) - len(topic)
    labelled_topic = [t for t in topic if t.example.prompt_harm_label is not None]
    skipped["topic_unlabelled"] += len(topic) - len(labelled_topic)
    topic = labelled_topic
    topic = [t for t in topic if t.example.id not in seen]  # already in (e.g. distilled from the same data)
    if topic_size is not None:
        topic = stratified_subset(topic, topic_size, seed)
    topic_pairs, topic_skips = assign_modes(topic, "dual" if mode == "think" else mode, think_ratio, seed, duplicate)
    skipped.update(topic_skips)
    asked = _rows_asking_categories(pairs, categories_ratio, seed) if categories_ratio is not None else set()
    rows = [sft_row(it, m, policy, budget, category_codes_of(it.example) if i in asked else None)
            for i, (it, m) in enumerate([*pairs, *topic_pairs])]
    random.Random(seed).shuffle(rows)
    if not rows:
        raise ValueError(f"no SFT rows were built (skipped: {dict(skipped)})")
    stats = {
        "rows": len(rows),
        "by_mode": dict(Counter(r["mode"] for r in rows)),
        "by_origin": dict(Counter(r["origin"] for r in rows)),
        "by_label": dict(Counter(f"{r['prompt_harm_label']}/{r['response_harm_label']}" for r in rows)),
        "skipped": {k: v for k, v in skipped.items() if v},
        "budget": str(budget),
    }
    if categories_ratio is not None:
        stats["categories"] = {
            "rows_asking": len(asked),
            "eligible": sum(1 for it, _ in pairs if category_codes_of(it.example) is not None),
            "by_code": dict(sorted(Counter(c for r in rows for c in r["category_codes"] or ()).items(),
                                   key=lambda kv: int(kv[0][1:]))),
        }
    return SftBuildResult(rows, stats)


def category_codes_of(example: GuardExample) -> tuple[str, ...] | None:
    """The Aegis codes a target names for this example: () when nothing in it is harmful; the codes joined
    in by prompt (`extra['category_codes']`) or mapped from its own categories; None when unknown."""
    if "harmful" not in (example.prompt_harm_label, example.response_harm_label):
        return ()
    joined = example.extra.get("category_codes")
    if joined:
        return tuple(joined)
    if not example.categories:
        return None
    return aegis_codes(example.source, example.categories)


def _rows_asking_categories(pairs, ratio: float, seed: int) -> set[int]:
    """Indices of the (item, mode) pairs that ask for categories: a seeded `ratio` of the eligible ones."""
    eligible = [i for i, (it, _) in enumerate(pairs) if category_codes_of(it.example) is not None]
    return set(random.Random(f"{seed}:categories").sample(eligible, round(ratio * len(eligible))))


def example_of_row(row: dict) -> GuardExample:
    return GuardExample.from_row(row)


def messages_of_row(row: dict, example: GuardExample | None = None, reasoning: str | None = None) -> list[dict]:
    """Re-render a row's chat (optionally with a shortened example or reasoning)."""
    policy = json.loads(row["policy"]) if row.get("policy") else None
    example = example or example_of_row(row)
    reasoning = reasoning if reasoning is not None else row.get("reasoning")
    codes = row.get("category_codes")
    return build_chat_example(example, row["mode"], reasoning=reasoning if row["mode"] == "think" else None, policy=policy,
                              categories=None if codes is None else list(codes))
