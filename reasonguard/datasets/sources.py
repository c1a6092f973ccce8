"""Loading what configs name: a `DataSource` (a registered dataset or a table file with a column
mapping) and a predict config's data plus evaluation suite. Configs stay declarative; the I/O is here."""

from __future__ import annotations

import random
from typing import Sequence, TypeVar

from reasonguard.schema import GuardExample

T = TypeVar("T")


def seeded_subset(items: Sequence[T], n: int | None, seed: int) -> list[T]:
    """A seeded random `n` of `items` in their original order (all of them when n is None or larger)."""
    if n is None or n >= len(items):
        return list(items)
    keep = sorted(random.Random(seed).sample(range(len(items)), n))
    return [items[i] for i in keep]


def load_source(source) -> list[GuardExample]:
    """The examples a `DataSource` names: split filter, then offset, limit and a seeded sample."""
    from reasonguard.datasets import ColumnMapping, load_dataset, load_table

    if source.dataset is not None:
        examples = load_dataset(source.dataset, root=source.root)
    else:
        examples = load_table(source.path, ColumnMapping(**source.columns), source=source.display_name, label_map=source.label_map)
    if source.split is not None:
        examples = [e for e in examples if e.split == source.split]
    examples = examples[source.offset :]
    if source.limit is not None:
        examples = examples[: source.limit]
    examples = seeded_subset(examples, source.sample, source.seed)
    if not examples:
        raise ValueError(f"data source {source.display_name!r} yielded no examples (split={source.split!r})")
    return examples


def load_sources(sources: Sequence) -> dict[str, list[GuardExample]]:
    """{display name: examples} of several DataSources."""
    return {s.display_name: load_source(s) for s in sources}


def load_predict_datasets(config) -> dict[str, list[GuardExample]]:
    """{name: examples} of a PredictConfig's `data` and its suite entries (named as in the suite)."""
    from reasonguard.datasets import EVAL_SUITE, EXTRA_SUITE

    out = load_sources(config.data)
    entries = {"guardreasoner": EVAL_SUITE, "extra": EXTRA_SUITE, "all": EVAL_SUITE + EXTRA_SUITE}.get(config.suite or "", ())
    for entry in entries:
        examples = entry.load(root=config.datasets_root, limit=config.suite_limit)
        out[entry.name] = seeded_subset(examples, config.suite_sample, config.suite_seed)
    return out
