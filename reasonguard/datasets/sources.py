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
    from reasonguard.datasets.generic import DatasetFormatError

    if source.dataset is not None:
        examples, filter_split = load_dataset(source.dataset, root=source.root), source.split
    else:
        columns = ColumnMapping(**source.columns) if source.columns else None
        split_column = columns is not None and columns.split is not None
        # A file's rows take the source's split, unless a column gives each row its own: then it filters.
        examples = load_table(source.path, columns, source=source.display_name, label_map=source.label_map,
                              labels=source.labels, encoding=source.encoding,
                              split="test" if split_column else (source.split or "test"))
        filter_split = source.split if split_column else None
        if not examples:
            raise DatasetFormatError(f"{source.path} holds no rows")
    if filter_split is not None:
        present = sorted({e.split for e in examples})
        examples = [e for e in examples if e.split == filter_split]
        if not examples:
            hint = "" if source.dataset is not None else "; the split comes from the column mapped as `columns.split`"
            raise DatasetFormatError(f"data source {source.display_name!r} has no rows of split {filter_split!r} "
                                     f"(splits present: {', '.join(present)}){hint}")
    examples = examples[source.offset :]
    if source.limit is not None:
        examples = examples[: source.limit]
    examples = seeded_subset(examples, source.sample, source.seed)
    if not examples:
        raise DatasetFormatError(f"data source {source.display_name!r} yielded no examples "
                                 f"(offset={source.offset}, limit={source.limit})")
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


def describe_examples(examples: Sequence[GuardExample]) -> dict:
    """Counts a user checks before a run: rows, splits, labels per level, responses, multi-turn rows."""
    from collections import Counter

    def counts(values) -> dict:
        return {("unlabelled" if k is None else k): v for k, v in sorted(Counter(values).items(), key=lambda kv: str(kv[0]))}

    return {
        "rows": len(examples),
        "splits": counts(e.split for e in examples),
        "prompt_harm": counts(e.prompt_harm_label for e in examples),
        "response_harm": counts(e.response_harm_label for e in examples if e.response is not None),
        "with_response": sum(e.response is not None for e in examples),
        "multi_turn": sum(bool(e.extra.get("history")) for e in examples),
    }


def format_preview(name: str, examples: Sequence[GuardExample], width: int = 100) -> str:
    """A few lines: the counts of `describe_examples` and the first example, cut to `width` characters."""
    info = describe_examples(examples)
    lines = [f"{name}: {info['rows']} rows; splits {info['splits']}",
             f"  prompt labels: {info['prompt_harm']}"]
    if info["with_response"]:
        lines.append(f"  with a response: {info['with_response']}; response labels: {info['response_harm']}")
    if info["multi_turn"]:
        lines.append(f"  multi-turn rows (earlier turns in extra.history): {info['multi_turn']}")
    if examples:
        first = examples[0]
        cut = lambda t: (t if len(t) <= width else t[: width - 3] + "...").replace("\n", " ")  # noqa: E731
        lines.append(f"  first: id={first.id} prompt={cut(first.prompt)!r} label={first.prompt_harm_label}")
        if first.response is not None:
            lines.append(f"         response={cut(first.response)!r} label={first.response_harm_label}")
    return "\n".join(lines)


def data_sources_of(config) -> list:
    """Every DataSource inside a stage config (nested configs, lists and dicts walked), in order."""
    from pydantic import BaseModel

    from reasonguard.config.common import DataSource

    found: list = []

    def walk(value) -> None:
        if isinstance(value, DataSource):
            found.append(value)
        elif isinstance(value, BaseModel):
            for field in type(value).model_fields:
                walk(getattr(value, field))
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)

    walk(config)
    return found


def preview_sources(config) -> list[str]:
    """What a config would load, source by source (files and local datasets opened; hub ones named only)."""
    from reasonguard.datasets import get_spec

    out = []
    for source in data_sources_of(config):
        if source.dataset is not None and get_spec(source.dataset).kind == "hub":
            out.append(f"{source.display_name}: hub dataset {source.dataset} (not downloaded by a dry run)")
            continue
        out.append(format_preview(source.display_name, load_source(source)))
    return out
