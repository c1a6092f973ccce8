"""Difficult-sample mining for continual SFT (paper: predict the training set N times).

Items the guard always gets right teach nothing new; items it always gets wrong are
likely mislabelled. The inconsistent ones (right in some samples, wrong in others) are
the difficult samples kept for continual SFT.

A parse failure counts as wrong: the model did not produce the gold verdict, and an item
it cannot answer reliably is exactly the kind the next round should see.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from reasonguard.metrics import Sample, group_items, rows_of, sample_of

ItemClass = Literal["always_right", "always_wrong", "inconsistent"]
ITEM_CLASSES: tuple[str, ...] = get_args(ItemClass)


@dataclass(frozen=True)
class MiningResult:
    """Per-item classes (first-seen order) and the count of every class, zeros included.

    Items without a gold label cannot be right or wrong; they are left out and counted.
    """

    classes: dict[str, str]
    counts: dict[str, int]
    n_unlabelled: int = 0


def is_correct(sample: Sample) -> bool:
    """Right only when the sample parsed and its label equals the gold label."""
    return sample.vote is not None and sample.vote == sample.gold


def classify_outcomes(outcomes: Sequence[bool]) -> ItemClass:
    """The class of one item from its per-sample correctness."""
    if not outcomes:
        raise ValueError("an item needs at least one sample to be classified")
    if all(outcomes):
        return "always_right"
    if not any(outcomes):
        return "always_wrong"
    return "inconsistent"


def classify_items(rows: Any, task: str | None = None) -> MiningResult:
    """Classify items from their N sampled predictions.

    `rows` are prediction rows (mappings, a DataFrame or `Sample`s). `task=None` reads
    the flat `gold`/`pred` columns; `task="prompt"|"response"` reads that task's columns
    (`<task>_harm_gold`, `pred_<task>_harm`) so one prediction set is mined for both tasks,
    and skips flat rows of another task. Item ids must be unique within `rows`.
    """
    samples = (r if isinstance(r, Sample) else sample_of(r, task) for r in rows_of(rows))
    items = group_items(s for s in samples if s is not None)
    classes: dict[str, str] = {}
    unlabelled = 0
    for item_id, (gold, by_idx) in items.items():
        if gold is None:
            unlabelled += 1
            continue
        classes[item_id] = classify_outcomes([is_correct(s) for s in by_idx.values()])
    counts = {name: 0 for name in ITEM_CLASSES}
    for name in classes.values():
        counts[name] += 1
    return MiningResult(classes=classes, counts=counts, n_unlabelled=unlabelled)


def select_ids(result: MiningResult, item_class: ItemClass = "inconsistent") -> list[str]:
    """Ids of one class, in input order."""
    if item_class not in ITEM_CLASSES:
        raise ValueError(f"unknown item class {item_class!r}; expected one of {ITEM_CLASSES}")
    return [item_id for item_id, name in result.classes.items() if name == item_class]


def select_inconsistent(result: MiningResult) -> list[str]:
    """The difficult samples for continual SFT: neither always right nor always wrong."""
    return select_ids(result, "inconsistent")


def difficult_ids(rows: Any, tasks: Iterable[str | None] = (None,)) -> list[str]:
    """Union over tasks of inconsistent ids (an item hard on prompt or response harm), input order."""
    rows = rows_of(rows)  # read once: `rows` may be a one-shot iterator
    hard = {item_id for task in tasks for item_id in select_inconsistent(classify_items(rows, task))}
    ordered = (str(r["item_id"] if isinstance(r, Mapping) else r.item_id) for r in rows)
    return [item_id for item_id in dict.fromkeys(ordered) if item_id in hard]
