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
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from reasonguard.schema import HARM_LABELS, REFUSAL_LABELS, GuardExample

SUPPORTED_FORMATS: tuple[str, ...] = (".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet", ".txt")
_COMPRESSION = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
# Compressed content is recognised by its first bytes, whatever the file is called.
_MAGIC = ((b"\x1f\x8b", gzip.open), (b"BZh", bz2.open), (b"\xfd7zXZ\x00", lzma.open))
TEXT_COLUMN = "text"  # the one column of a .txt file (one prompt per non-empty line)
MESSAGE_ROLES = ("system", "user", "assistant")

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

    prompt: str | None = Field(None, description="Column with the user prompt (this or `messages` is required).")
    messages: str | None = Field(
        None, description="Column with a whole conversation: an OpenAI-style message list (JSON list or text) or a "
        "transcript ('User:' / 'Human:' and 'Assistant:' / 'AI:' turns). The last user turn is the prompt, the "
        "assistant turn after it the response, earlier turns extra['history'] (system turns: the policy).",
    )
    split: str | None = Field(None, description="Column with each row's split (train/test/...); unset: the source's split.")
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

    @model_validator(mode="after")
    def _prompt_or_messages(self) -> "ColumnMapping":
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of 'prompt' (a prompt column) or 'messages' (a conversation column)")
        return self

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


def read_records(path: str | os.PathLike, encoding: str = "utf-8") -> list[dict[str, Any]]:
    """All rows of a table as dicts (CSV cells that are empty become None).

    Compression is recognised by magic bytes (a gzip file without `.gz` reads as well); text is
    decoded as `encoding` with a UTF-8 byte-order mark dropped; every failure names the file."""
    path = str(path)
    fmt, _ = table_format(path)
    if not _is_remote(path) and not Path(path.removeprefix("file://")).exists():
        raise FileNotFoundError(f"no such file: {path}")
    with _open_binary(path) as raw:
        data = raw.read()
    for magic, opener in _MAGIC:
        if data.startswith(magic):
            try:
                with opener(io.BytesIO(data)) as inner:
                    data = inner.read()
            except (OSError, EOFError, lzma.LZMAError) as exc:
                raise DatasetFormatError(f"{path}: compressed data that cannot be read ({exc}); is the file complete?") from None
            break
    if fmt == ".parquet":
        import pyarrow as pa  # noqa: PLC0415
        import pyarrow.parquet as pq  # noqa: PLC0415

        try:
            return pq.read_table(io.BytesIO(data)).to_pylist()
        except (pa.ArrowException, OSError) as exc:
            what = "an empty file" if not data else "not a readable parquet file"
            raise DatasetFormatError(f"{path} is {what} ({exc})") from None
    codec = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
    try:
        text = data.decode(codec)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DatasetFormatError(
            f"{path} line {line}: bytes that are not {encoding} text ({exc.reason} at byte {exc.start}). Convert the file "
            f"(e.g. iconv -f latin1 -t utf-8) or set the source's `encoding` (e.g. encoding: latin-1)"
        ) from None
    except LookupError:
        raise DatasetFormatError(f"{path}: unknown text encoding {encoding!r}") from None
    if fmt in (".csv", ".tsv"):
        return list(_delimited_records(io.StringIO(text, newline=""), path, "\t" if fmt == ".tsv" else ","))
    if fmt == ".txt":
        return [{TEXT_COLUMN: line.strip()} for line in text.splitlines() if line.strip()]
    if fmt == ".json":
        return _json_records(text, path)
    return list(_jsonl_records(io.StringIO(text), path))


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
        text = value.strip().lower()
        try:  # "1.0" / "0.0": what pandas writes for an integer column with gaps
            number = float(text)
        except ValueError:
            return text
        return str(int(number)) if number.is_integer() else text
    return str(value)


def normalise_label_map(mapping: Mapping[Any, str | None], allowed: tuple[str, ...]) -> dict[Any, str | None]:
    out: dict[Any, str | None] = {}
    for raw, target in mapping.items():
        if target is not None and target not in allowed:
            raise ValueError(f"label map sends {raw!r} to {target!r}; targets must be one of {allowed} or None")
        key = label_key(raw)
        out[key] = target
        if isinstance(key, bool):  # YAML `true:` and a CSV cell "true" mean the same
            out.setdefault(str(key).lower(), target)
        elif key in ("true", "false"):
            out.setdefault(key == "true", target)
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


LABEL_FIELDS = {"prompt_harm": "prompt_harm_label", "response_harm": "response_harm_label"}


def constant_labels_problem(labels: Mapping[str, str], columns: ColumnMapping | None) -> tuple[str, str] | None:
    """(label key, why) when constant `labels` ({"prompt_harm": "harmful"}) cannot apply with `columns`, or None."""
    for key, value in labels.items():
        if key not in LABEL_FIELDS:
            return key, f"is not a label level; use {sorted(LABEL_FIELDS)}"
        if value not in HARM_LABELS:
            return key, f"must be one of {HARM_LABELS}, got {value!r}"
        column = getattr(columns, LABEL_FIELDS[key]) if columns is not None else None
        if column is not None:
            return key, f"is constant and also read from column {column!r}; give one of the two"
    return None


def records_to_examples(
    records: list[dict[str, Any]],
    columns: ColumnMapping,
    *,
    source: str,
    split: str,
    label_map: Mapping[Any, str | None] | None = None,
    refusal_map: Mapping[Any, str | None] | None = None,
    labels: Mapping[str, str] | None = None,
    path: str = "<records>",
) -> list[GuardExample]:
    """Map already-read rows with `columns`; the core of `load_table`.

    `labels` gives every row a constant label ({"prompt_harm": "harmful"}: an all-harmful file);
    a row without a text to judge (missing or whitespace-only prompt) is an error naming it."""
    check_columns(records, columns, path)
    constant = dict(labels or {})
    problem = constant_labels_problem(constant, columns)
    if problem:
        raise DatasetFormatError(f"labels for {path}: {problem[0]} {problem[1]}")
    harm = normalise_label_map(DEFAULT_LABEL_MAP if label_map is None else label_map, HARM_LABELS)
    refusal = normalise_label_map(DEFAULT_REFUSAL_MAP if refusal_map is None else refusal_map, REFUSAL_LABELS)
    examples: list[GuardExample] = []
    seen: dict[str, int] = {}
    for index, record in enumerate(records):
        example = _row_to_example(record, index, columns, source, split, harm, refusal, path, constant)
        if example.id in seen:
            raise DatasetFormatError(f"duplicate id {example.id!r} in {path} (rows {seen[example.id]} and {index})")
        seen[example.id] = index
        examples.append(example)
    return examples


_SPEAKER = re.compile(r"^\s*(user|human|assistant|ai|system)\s*:\s?", re.I | re.M)
_ROLE_OF_SPEAKER = {"user": "user", "human": "user", "assistant": "assistant", "ai": "assistant", "system": "system"}


def parse_transcript(text: str) -> list[dict[str, str]]:
    """'User: ... / Assistant: ...' (also Human:, AI:, System:) turns, each starting a line, as messages."""
    marks = list(_SPEAKER.finditer(text))
    if not marks:
        raise ValueError("no 'User:' / 'Human:' / 'Assistant:' / 'AI:' turn found")
    if text[: marks[0].start()].strip():
        raise ValueError("text before the first 'User:' / 'Assistant:' turn")
    turns = []
    for m, nxt in zip(marks, [*marks[1:], None]):
        content = text[m.end(): nxt.start() if nxt else len(text)].strip()
        turns.append({"role": _ROLE_OF_SPEAKER[m.group(1).lower()], "content": content})
    return turns


def conversation_of(value: Any) -> tuple[str, str | None, list[dict[str, str]]]:
    """(prompt, response, earlier turns) of a messages cell: an OpenAI-style list (or its JSON text) or a
    transcript. The last user turn is the prompt, the assistant turn right after it the response."""
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"a message list that is not valid JSON ({exc})") from None
    if isinstance(value, str):
        value = parse_transcript(value)
    if hasattr(value, "tolist"):
        value = value.tolist()
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"expected a non-empty message list or a transcript, got {type(value).__name__}")
    turns = []
    for i, m in enumerate(value):
        if not isinstance(m, Mapping) or m.get("role") not in MESSAGE_ROLES or not isinstance(m.get("content"), str):
            raise ValueError(f"message {i} must be {{role: system|user|assistant, content: text}}, got {m!r}"[:300])
        turns.append({"role": m["role"], "content": m["content"]})
    users = [i for i, t in enumerate(turns) if t["role"] == "user"]
    if not users:
        raise ValueError("the conversation has no user turn")
    last = users[-1]
    response = turns[last + 1]["content"] if last + 1 < len(turns) and turns[last + 1]["role"] == "assistant" else None
    return turns[last]["content"], response, turns[:last]


def _row_to_example(
    record: dict[str, Any],
    index: int,
    columns: ColumnMapping,
    source: str,
    split: str,
    harm: dict[Any, str | None],
    refusal: dict[Any, str | None],
    path: str,
    constant: Mapping[str, str] | None = None,
) -> GuardExample:
    where = f"at row {index} of {path}"
    history: list[dict[str, str]] = []
    if columns.messages is not None:
        try:
            prompt, response, history = conversation_of(record.get(columns.messages))
        except ValueError as exc:
            raise DatasetFormatError(f"column {columns.messages!r} {where}: {exc}") from None
    else:
        prompt = record.get(columns.prompt)
        if not isinstance(prompt, str):
            raise DatasetFormatError(f"column {columns.prompt!r} {where} must hold text, got {prompt!r}")
        response = record.get(columns.response) if columns.response else None
        response = None if response is None or (isinstance(response, float) and math.isnan(response)) else str(response)
    if not prompt.strip():
        raise DatasetFormatError(f"empty prompt {where} (only whitespace): nothing to judge; remove the row or fix the text")
    row_id = record.get(columns.id) if columns.id else index
    if is_missing(row_id):
        raise DatasetFormatError(f"column {columns.id!r} {where} has no id")
    row_split = split
    if columns.split is not None:
        row_split = record.get(columns.split)
        if is_missing(row_split):
            raise DatasetFormatError(f"column {columns.split!r} {where} has no split")
        row_split = str(row_split).strip()

    def label(column: str | None, mapping: dict[Any, str | None]) -> str | None:
        return map_label(record.get(column), mapping, f"in column {column!r} {where}") if column else None

    extra = {c: _json_safe(record.get(c)) for c in columns.extra}
    if history:
        extra["history"] = history
    refusal_label = label(columns.response_refusal_label, refusal)
    if refusal_label is not None:
        extra["response_refusal_label"] = refusal_label
    constant = constant or {}
    try:
        return GuardExample(
            id=f"{source}:{id_text(row_id)}",
            source=source,
            prompt=prompt,
            response=response,
            prompt_harm_label=constant.get("prompt_harm") or label(columns.prompt_harm_label, harm),
            response_harm_label=constant.get("response_harm") or label(columns.response_harm_label, harm),
            categories=to_categories(record.get(columns.categories), columns.categories_sep) if columns.categories else (),
            split=row_split,
            extra=extra,
        )
    except DatasetFormatError:
        raise  # a label error already names its row and file
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
    columns: ColumnMapping | None = None,
    *,
    source: str | None = None,
    split: str = "test",
    label_map: Mapping[Any, str | None] | None = None,
    refusal_map: Mapping[Any, str | None] | None = None,
    labels: Mapping[str, str] | None = None,
    encoding: str = "utf-8",
    limit: int | None = None,
) -> list[GuardExample]:
    """Load a table file as `GuardExample` rows.

    `label_map` maps raw harm-label values to "harmful" / "unharmful" / None (default:
    `DEFAULT_LABEL_MAP`; keys are matched case-insensitively, 1 and 1.0 both match "1");
    `refusal_map` does the same for `columns.response_refusal_label`; `labels` labels every row
    ({"prompt_harm": "harmful"}). `source` defaults to the file name without its suffixes; ids are
    `<source>:<id column or row number>`. Rows are tagged `split` unless `columns.split` names a column.
    A `.txt` file holds one prompt per non-empty line (no `columns` needed).
    """
    records = read_records(path, encoding=encoding)
    if columns is None:
        if table_format(path)[0] != ".txt":
            raise DatasetFormatError(f"{path}: give a column mapping (at least prompt or messages)")
        columns = ColumnMapping(prompt=TEXT_COLUMN)
    if limit is not None:
        records = records[:limit]
    name = source or Path(str(path)).name.split(".")[0]
    return records_to_examples(
        records, columns, source=name, split=split, label_map=label_map, refusal_map=refusal_map, labels=labels,
        path=str(path),
    )
