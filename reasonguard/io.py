"""Append-only parquet part folders: incremental writes, resume by key, nothing lost on failure.

A stage writes each finished batch as its own part file (temp file + rename, so a crash never
leaves a torn file). On restart it reads the keys already written and skips them.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import pyarrow as pa
import pyarrow.parquet as pq


class PartWriter:
    """Writes lists of row dicts as `part-<n>-<uuid>.parquet` files in one folder."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._count = len(list(self.folder.glob("part-*.parquet")))
        self.rows_written = 0

    def write(self, rows: Sequence[dict]) -> Path | None:
        if not rows:
            return None
        table = pa.Table.from_pylist(list(rows))
        name = f"part-{self._count:05d}-{uuid.uuid4().hex[:8]}.parquet"
        tmp = self.folder / f".{name}.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, self.folder / name)
        self._count += 1
        self.rows_written += len(rows)
        return self.folder / name


def read_parts(folder: str | Path, columns: Sequence[str] | None = None) -> list[dict]:
    """All rows of a part folder (or a single parquet file); empty when it does not exist."""
    folder = Path(folder)
    if folder.is_file():
        return pq.read_table(folder, columns=columns).to_pylist()
    files = sorted(folder.glob("part-*.parquet")) if folder.exists() else []
    rows: list[dict] = []
    for f in files:
        rows.extend(pq.read_table(f, columns=columns).to_pylist())
    return rows


def done_keys(folder: str | Path, key_columns: Sequence[str]) -> set[tuple]:
    """Keys already written (for resume)."""
    return {tuple(r[c] for c in key_columns) for r in read_parts(folder, columns=list(key_columns))}


TRACE_FILES = ("traces_budgets.parquet", "traces.parquet")  # a shorten / distill (or import) output_dir's trace table


def trace_table_path(path: str | Path) -> Path:
    """The one rule for "a traces path": a file as it is; a run folder -> its shortened table
    (traces_budgets.parquet, from shorten) if there is one, else its traces.parquet (distill, import)."""
    path = Path(path)
    if not path.is_dir():
        return path
    for name in TRACE_FILES:
        if (path / name).exists():
            return path / name
    raise FileNotFoundError(f"{path} holds no trace table ({' or '.join(TRACE_FILES)}): run distill, import_traces or shorten first")


def write_single_parquet(rows: Iterable[dict], path: str | Path, schema_like: Sequence[dict] = ()) -> Path:
    """Consolidate rows into one parquet file (atomic). With no rows, the columns of `schema_like`
    (rows of the same table) are kept, so readers of an empty result still find its columns."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = list(rows)
    if rows:
        table = pa.Table.from_pylist(rows)
    elif schema_like:
        table = pa.Table.from_pylist(list(schema_like[:64])).schema.empty_table()
    else:
        table = pa.table({})
    tmp = path.with_suffix(path.suffix + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path


def write_json(obj, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)
    return path


@contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """A temporary folder beside `target` that replaces it when the block succeeds.

    Readers (vLLM, a later run's cache check) never see a half-written checkpoint: a crash
    leaves the previous `target` (or none) and the temporary folder is removed.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
