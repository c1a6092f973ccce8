"""Config blocks every stage shares: where Ray runs, where data comes from, how to sample, how wide to go."""

from __future__ import annotations

import random
from typing import Any, Literal

from pydantic import Field, model_validator

from reasonguard.config.base import StrictModel

from reasonguard.vocabulary import Mode, PolicySpec  # noqa: E402,F401 - the guard vocabulary, declared once


class RayConfig(StrictModel):
    """Where the stage's Ray work runs. `address` None = join RAY_ADDRESS (set by `ray job submit`) or start locally."""

    address: str | None = Field(None, description="Ray address ('auto', 'ray://host:10001'); None = RAY_ADDRESS or a local Ray.")
    num_cpus: int | None = Field(None, ge=1, description="CPUs of a local Ray started in-process (None = all).")
    wait_for_min_actors_s: int = Field(
        600, ge=1, description="Fail, rather than wait forever, when inference actors cannot be placed."
    )


class DataSource(StrictModel):
    """One dataset: a registered name (see `reasonguard datasets list`) or a table file with a column mapping."""

    dataset: str | None = Field(None, description="Registered dataset name, e.g. 'demo', 'xstest', 'hf_aegis2_test'.")
    path: str | None = Field(None, description="A jsonl/json/csv/tsv/parquet/txt file (local path or URL) of your own data.")
    columns: dict[str, Any] | None = Field(
        None, description="Column mapping for `path` (see ColumnMapping): prompt or messages required; not needed for .txt.")
    label_map: dict[Any, str | None] | None = Field(
        None, description="Raw label value -> harmful/unharmful/null, for `path` (keys: text, numbers, true/false).")
    labels: dict[Literal["prompt_harm", "response_harm"], Literal["harmful", "unharmful"]] | None = Field(
        None, description="A constant label for every row of `path`, e.g. {prompt_harm: harmful} for an all-harmful set.")
    encoding: str = Field("utf-8", description="Text encoding of `path` (a UTF-8 byte-order mark is dropped), e.g. latin-1.")
    name: str | None = Field(None, description="Name used in outputs and reports (default: dataset name or file stem).")
    split: str | None = Field(
        None, description="Registered datasets, or a file whose `columns` map a split column: keep only this split. "
        "A file without a split column: the split its rows belong to (default test).",
    )
    root: str | None = Field(None, description="Datasets folder for vendored datasets (default: REASONGUARD_DATASETS_DIR).")
    offset: int = Field(0, ge=0, description="Skip the first N examples (after the split filter), e.g. a held-out pool.")
    limit: int | None = Field(None, ge=1, description="Keep the first N examples (after the split filter and offset).")
    sample: int | None = Field(None, ge=1, description="Keep a random subset of N examples (seeded), after `limit`.")
    seed: int = Field(0, description="Seed of `sample`.")

    @model_validator(mode="after")
    def _one_source(self) -> "DataSource":
        if (self.dataset is None) == (self.path is None):
            raise ValueError("give exactly one of 'dataset' (a registered name) or 'path' (a table file)")
        if self.dataset is not None and (self.columns or self.label_map or self.labels):
            raise ValueError("'columns', 'label_map' and 'labels' apply to 'path' only")
        if self.dataset is not None:
            from reasonguard.datasets import get_spec

            get_spec(self.dataset)  # unknown names fail at validation time, listing the registered ones
            return self
        self._check_file_mapping()
        return self

    def _check_file_mapping(self) -> None:
        """Everything about a file source that can be checked without opening it, checked at config load."""
        from pydantic import ValidationError

        from reasonguard.datasets.generic import (
            ColumnMapping, DatasetFormatError, constant_labels_problem, normalise_label_map, table_format,
        )
        from reasonguard.schema import HARM_LABELS

        try:
            fmt, _ = table_format(self.path)
        except DatasetFormatError as exc:
            raise ValueError(str(exc)) from None
        if fmt != ".txt" and not self.columns:
            raise ValueError(f"'path' {self.path} needs 'columns' (at least {{prompt: <column>}} or {{messages: <column>}})")
        mapping = None
        glued = [k for k, v in (self.columns or {}).items() if v is None and ":" in str(k)]
        if glued:  # YAML reads {prompt:text} as the key "prompt:text" with no value
            raise ValueError(f"columns of {self.path}: {glued[0]!r} is one key without a value; in YAML write "
                             f"'{glued[0].split(':', 1)[0]}: {glued[0].split(':', 1)[1]}' (a space after the colon)")
        if self.columns:
            try:
                mapping = ColumnMapping(**self.columns)
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc']) or 'columns'}: "
                    + ("unknown key (known: " + ", ".join(ColumnMapping.model_fields) + ")" if e["type"] == "extra_forbidden"
                       else e["msg"])
                    for e in exc.errors(include_url=False))
                raise ValueError(f"columns of {self.path}: {problems}") from None
        if self.label_map is not None:
            try:
                normalise_label_map(self.label_map, HARM_LABELS)
            except ValueError as exc:
                raise ValueError(f"label_map of {self.path}: {exc}") from None
        problem = constant_labels_problem(self.labels or {}, mapping)
        if problem:
            raise ValueError(f"labels.{problem[0]} of {self.path} {problem[1]}")

    @property
    def display_name(self) -> str:
        if self.name:
            return self.name
        if self.dataset:
            return self.dataset
        from pathlib import Path

        return Path(self.path).name.split(".")[0]


class SamplingSettings(StrictModel):
    """Decoding settings (paper defaults for the guard: temperature 0.6, top-p 0.95, 400 new tokens)."""

    temperature: float = Field(0.6, ge=0)
    top_p: float = Field(0.95, gt=0, le=1)
    max_tokens: int = Field(400, ge=1)
    seed: int | None = Field(0, description="Base seed; sample k of an item uses seed + k (None = unseeded).")

    def by_mode(self, modes, max_tokens_by_mode: dict | None = None) -> dict:
        """One SamplingConfig per mode (n=1: each sample is its own row with seed + k), a mode's
        max_tokens from `max_tokens_by_mode` where given (no_think needs few)."""
        overrides = max_tokens_by_mode or {}
        return {m: self.to_sampling(max_tokens=overrides.get(m, self.max_tokens)) for m in modes}

    def to_sampling(self, **overrides: Any):
        from reasonguard.sampling import SamplingConfig

        fields = {**self.model_dump(), **overrides}
        return SamplingConfig(**fields)


class DecodingSettings(StrictModel):
    """How the guard's answer is decoded and scored (reasonguard.decoding, reasonguard.calibration)."""

    constrained: bool = Field(
        True, description="Verdict-safe decoding: the verdict lines are decoded under a constraint, so every answer parses "
        "(reasoning stays free text up to the budget). False = raw output, for studies of what the model writes.",
    )
    calibration: str | None = Field(
        "auto", description="Calibration of P(harmful): 'auto' = calibration.json beside the checkpoint when there is one, "
        "a path to a calibration file, or None for the model's raw probability.",
    )


class PipelineSettings(StrictModel):
    """How wide a Ray Data inference stage runs."""

    batch_size: int = Field(16, ge=1, description="Rows per batch sent to an engine actor.")
    concurrency: int = Field(1, ge=1, description="Engine actors (replicas); each holds one model copy.")
    gpus_per_replica: float = Field(0, ge=0, description="GPUs per engine actor (0 = CPU; tensor parallel needs TP GPUs).")
    flush_every: int = Field(64, ge=1, description="Rows per part file written; smaller = less lost on a crash.")
