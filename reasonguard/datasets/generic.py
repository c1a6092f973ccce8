"""Bring your own data: read a .jsonl / .json / .csv / .tsv / .parquet table into `GuardExample` rows.

`load_table(path, ColumnMapping(prompt="text", prompt_harm_label="label"))` names the source
columns; a label map turns the source's label values ("unsafe", 1, True, ...) into
"harmful" / "unharmful". Every error names the file, the column or the row at fault.
Paths may be local or any URL fsspec (or pyarrow's filesystems) can open (s3://, gs://, hf://);
a trailing .gz / .bz2 / .xz is decompressed.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import lzma
import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel, ConfigDict, Field

from reasonguard.schema import HARM_LABELS, REFUSAL_LABELS, GuardExample

SUPPORTED_FORMATS: tuple[str, ...] = (".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet")
_COMPRESSION = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}

DEFAULT_LABEL_MAP: dict[Any, str | None] = {
    "harmful": "harmful",
    "unharmful": "unharmful",
    "unsafe": "harmful",
    "safe": "unharmful",
    "1": "harmful",
    "0": "unharmful",
    True: "harmful",
    False: "unharmful",
    "yes": "harmful",
    "no": "unharmful",
}
DEFAULT_REFUSAL_MAP: dict[Any, str | None] = {
    "refusal": "refusal",
    "compliance": "compliance",
    "1": "refusal",
    "0": "compliance",
    True: "refusal",
    False: "compliance",
}


class DatasetFormatError(ValueError):
    """A table that cannot be mapped: unsupported format, missing column, unknown label, bad row."""


class ColumnMapping(BaseModel):
    """Names of the source columns that fill each `GuardExample` field (only `prompt` is required)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: str = Field(description="Column with the user prompt (required).")
    id: str | None = Field(None, description="Column with a row id; ids are `<source>:<row number>` when unset.")
    response: str | None = Field(None, description="Column with the assistant response (null/empty = no response).")
    prompt_harm_label: str | None = Field(None, description="Column with the prompt harm label.")
    response_harm_label: str | None = Field(None, description="Column with the response harm label.")
    response_refusal_label: str | None = Field(
        None, description="Column with a refusal label; stored as extra['response_refusal_label']."
    )
    categories: str | None = Field(
        None, description="Column with categories: a list, a dict of flags (true keys kept) or a string."
    )
    categories_sep: str | None = Field(
        None, description="Separator that splits a string categories value (e.g. ','); unset keeps it whole."
    )
    extra: tuple[str, ...] = Field((), description="Further columns copied as-is into `extra`.")

    def source_columns(self) -> dict[str, str]:
        """{mapping field: source column} for every column this mapping reads."""
        named = {k: v for k, v in self.model_dump(exclude={"extra", "categories_sep"}).items() if v is not None}
        named.update({f"extra[{c}]": c for c in self.extra})
        return named


# ---------------------------------------------------------------- reading


def _is_remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def _open_binary(path: str) -> IO[bytes]:
    if not _is_remote(path):
        return open(path.removeprefix("file://"), "rb")
    try:
        import fsspec  # noqa: PLC0415 - optional, only for remote paths

        return fsspec.open(path, "rb").open()
    except ImportError:
        from pyarrow import fs  # noqa: PLC0415

        filesystem, inner = fs.FileSystem.from_uri(path)
        return filesystem.open_input_stream(inner)


def table_format(path: str | os.PathLike) -> tuple[str, str | None]:
    """(format suffix, compression suffix or None) of a path, e.g. ('.jsonl', '.gz')."""
    suffixes = [s.lower() for s in Path(str(path)).suffixes]
    compression = suffixes.pop() if suffixes and suffixes[-1] in _COMPRESSION else None
    fmt = suffixes[-1] if suffixes else ""
    if fmt not in SUPPORTED_FORMATS:
        raise DatasetFormatError(
            f"unsupported file type {''.join(Path(str(path)).suffixes) or '(none)'!r} for {path}; "
            f"supported: {', '.join(SUPPORTED_FORMATS)} (optionally .gz/.bz2/.xz compressed)"
        )
    return fmt, compression


def read_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All rows of a table as dicts (CSV cells that are empty become None)."""
    path = str(path)
    fmt, compression = table_format(path)
    if not _is_remote(path) and not Path(path.removeprefix("file://")).exists():
        raise FileNotFoundError(f"no such file: {path}")
    with _open_binary(path) as raw:
        stream: IO[bytes] = _COMPRESSION[compression](raw) if compression else raw
        if fmt == ".parquet":
            import pyarrow.parquet as pq  # noqa: PLC0415

            return pq.read_table(io.BytesIO(stream.read())).to_pylist()
        text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
        if fmt in (".csv", ".tsv"):
            return list(_delimited_records(text, path, "\t" if fmt == ".tsv" else ","))
        if fmt == ".json":
            return _json_records(text.read(), path)
        return list(_jsonl_records(text, path))


def _delimited_records(text: IO[str], path: str, delimiter: str) -> Iterator[dict[str, Any]]:
    """CSV/TSV rows as dicts. A row with more or fewer fields than the header (an unquoted comma in a
    text, a cut line) is an error naming the file and line: read by position it would silently cut a
    prompt at the comma and drop the rest of the line."""
    reader = csv.DictReader(text, delimiter=delimiter)
    width = None
    for row in reader:
        width = width if width is not None else len(reader.fieldnames or ())
        extra, missing = row.get(None), [k for k, v in row.items() if k is not None and v is None]
        if extra or missing:
            found = width + len(extra or ()) - len(missing)
            raise DatasetFormatError(
                f"{path} line {reader.line_num}: {found} fields where the header has {width} "
                f"(a text with an unquoted '{delimiter}'? quote fields that contain it, or use jsonl or parquet)"
            )
        yield {k: (v if v != "" else None) for k, v in row.items()}


def _jsonl_records(lines: Iterator[str], path: str) -> Iterator[dict[str, Any]]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetFormatError(f"{path} line {number} is not valid JSON: {exc}") from None
        if not isinstance(record, dict):
            raise DatasetFormatError(f"{path} line {number} is a {type(record).__name__}, not a JSON object")
        yield record


def _json_records(text: str, path: str) -> list[dict[str, Any]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        # Some hub ".json" files (e.g. Aegis 2.0) are really JSON lines.
        return list(_jsonl_records(iter(text.splitlines()), path))
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise DatasetFormatError(f"{path} holds a JSON object; expected a list of row objects")
        data = lists[0]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise DatasetFormatError(f"{path} must hold a JSON list of row objects")
    return data


# ---------------------------------------------------------------- value helpers


def is_missing(value: Any) -> bool:
    """None, NaN or an empty / whitespace-only string."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def label_key(value: Any) -> Any:
    """Normalise a raw label for lookup: strings stripped and lower-cased, 1.0 -> "1", bools kept."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        return value.strip().lower()
    return str(value)


def normalise_label_map(mapping: Mapping[Any, str | None], allowed: tuple[str, ...]) -> dict[Any, str | None]:
    out: dict[Any, str | None] = {}
    for raw, target in mapping.items():
        if target is not None and target not in allowed:
            raise ValueError(f"label map sends {raw!r} to {target!r}; targets must be one of {allowed} or None")
        out[label_key(raw)] = target
    return out


def map_label(value: Any, mapping: dict[Any, str | None], where: str) -> str | None:
    """Mapped label, None for a missing value; DatasetFormatError for a value the map does not know."""
    if is_missing(value):
        return None
    key = label_key(value)
    if key in mapping:
        return mapping[key]
    if isinstance(key, bool) and str(key).lower() in mapping:
        return mapping[str(key).lower()]
    known = ", ".join(repr(k) for k in mapping)
    raise DatasetFormatError(f"unknown label value {value!r} {where}; known values: {known}. Pass a label map for it.")


def to_categories(value: Any, sep: str | None = None) -> tuple[str, ...]:
    """Categories from a list/array, a dict of flags (truthy keys) or a string (split on `sep`)."""
    if is_missing(value):
        return ()
    if isinstance(value, Mapping):
        return tuple(str(k) for k, flag in value.items() if flag)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                return to_categories(json.loads(text))
            except json.JSONDecodeError:
                pass
        parts = text.split(sep) if sep else [text]
        return tuple(p.strip() for p in parts if p.strip())
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return tuple(str(v) for v in value if not is_missing(v))
    return (str(value),)


def id_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# ---------------------------------------------------------------- mapping


def check_columns(records: list[dict[str, Any]], columns: ColumnMapping, path: str) -> None:
    available = list(records[0]) if records else []
    for field, column in columns.source_columns().items():
        if records and not any(column in r for r in records[:1000]):
            raise DatasetFormatError(
                f"column {column!r} (ColumnMapping.{field}) not found in {path}; available columns: {available}"
            )


def records_to_examples(
    records: list[dict[str, Any]],
    columns: ColumnMapping,
    *,
    source: str,
    split: str,
    label_map: Mapping[Any, str | None] | None = None,
    refusal_map: Mapping[Any, str | None] | None = None,
    path: str = "<records>",
) -> list[GuardExample]:
    """Map already-read rows with `columns`; the core of `load_table`."""
    check_columns(records, columns, path)
    harm = normalise_label_map(DEFAULT_LABEL_MAP if label_map is None else label_map, HARM_LABELS)
    refusal = normalise_label_map(DEFAULT_REFUSAL_MAP if refusal_map is None else refusal_map, REFUSAL_LABELS)
    examples: list[GuardExample] = []
    seen: dict[str, int] = {}
    for index, record in enumerate(records):
        example = _row_to_example(record, index, columns, source, split, harm, refusal, path)
        if example.id in seen:
            raise DatasetFormatError(f"duplicate id {example.id!r} in {path} (rows {seen[example.id]} and {index})")
        seen[example.id] = index
        examples.append(example)
    return examples


def _row_to_example(
    record: dict[str, Any],
    index: int,
    columns: ColumnMapping,
    source: str,
    split: str,
    harm: dict[Any, str | None],
    refusal: dict[Any, str | None],
    path: str,
) -> GuardExample:
    where = f"at row {index} of {path}"
    prompt = record.get(columns.prompt)
    if not isinstance(prompt, str):
        raise DatasetFormatError(f"column {columns.prompt!r} {where} must hold text, got {prompt!r}")
    row_id = record.get(columns.id) if columns.id else index
    if is_missing(row_id):
        raise DatasetFormatError(f"column {columns.id!r} {where} has no id")
    response = record.get(columns.response) if columns.response else None
    response = None if response is None or (isinstance(response, float) and math.isnan(response)) else str(response)

    def label(column: str | None, mapping: dict[Any, str | None]) -> str | None:
        return map_label(record.get(column), mapping, f"in column {column!r} {where}") if column else None

    extra = {c: _json_safe(record.get(c)) for c in columns.extra}
    refusal_label = label(columns.response_refusal_label, refusal)
    if refusal_label is not None:
        extra["response_refusal_label"] = refusal_label
    try:
        return GuardExample(
            id=f"{source}:{id_text(row_id)}",
            source=source,
            prompt=prompt,
            response=response,
            prompt_harm_label=label(columns.prompt_harm_label, harm),
            response_harm_label=label(columns.response_harm_label, harm),
            categories=to_categories(record.get(columns.categories), columns.categories_sep) if columns.categories else (),
            split=split,
            extra=extra,
        )
    except ValueError as exc:
        raise DatasetFormatError(f"invalid row {where}: {exc}") from None


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def load_table(
    path: str | os.PathLike,
    columns: ColumnMapping,
    *,
    source: str | None = None,
    split: str = "test",
    label_map: Mapping[Any, str | None] | None = None,
    refusal_map: Mapping[Any, str | None] | None = None,
    limit: int | None = None,
) -> list[GuardExample]:
    """Load a table file as `GuardExample` rows.

    `label_map` maps raw harm-label values to "harmful" / "unharmful" / None (default:
    `DEFAULT_LABEL_MAP`; keys are matched case-insensitively, 1 and 1.0 both match "1");
    `refusal_map` does the same for `columns.response_refusal_label`. `source` defaults to
    the file name without its suffixes; ids are `<source>:<id column or row number>`.
    """
    records = read_records(path)
    if limit is not None:
        records = records[:limit]
    name = source or Path(str(path)).name.split(".")[0]
    return records_to_examples(
        records, columns, source=name, split=split, label_map=label_map, refusal_map=refusal_map, path=str(path)
    )
