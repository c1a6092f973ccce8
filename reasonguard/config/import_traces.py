"""`ImportTracesConfig`: recorded teacher outputs -> a distillation trace table (reasonguard.trace_import)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from reasonguard.config.base import StrictModel
from reasonguard.config.common import PolicySpec
from reasonguard.config.distill import TraceFilters


class TraceSource(StrictModel):
    """One file (or hub dataset) of recorded teacher outputs."""

    format: Literal["guardreasoner", "nemotron", "traces"] = Field(
        description="'guardreasoner': the GuardReasoner trace jsonl (# Task / ## Reasoning Step blocks); 'nemotron': the "
        "Nemotron Content Safety Reasoning dataset (efficient_reasoning_* traces, prediction_gt_mismatch_* flags), a "
        "local jsonl of it or, without `path`, the hub; 'traces': a trace table of an earlier distill/import run.",
    )
    path: str | None = Field(
        None, description="The file (jsonl, or parquet for 'traces'; a run folder for 'traces'). 'datasets:<rel>' is read "
        "under the datasets folder ($REASONGUARD_DATASETS_DIR, else ../shared/datasets beside the checkout).",
    )
    name: str | None = Field(None, description="Dataset name in the trace table (default: the file stem or format).")
    teachers: list[str] | None = Field(None, description="Only these teachers' traces (default: all).")
    limit: int | None = Field(None, ge=1, description="Only the first N rows of the file (smoke runs).")

    @model_validator(mode="after")
    def _needs_path(self) -> "TraceSource":
        if self.path is None and self.format != "nemotron":
            raise ValueError(f"format '{self.format}' needs 'path'")
        return self

    @property
    def resolved_path(self) -> str | None:
        if self.path is None or not self.path.startswith("datasets:"):
            return self.path
        from reasonguard.datasets.local import default_datasets_root

        return str(default_datasets_root() / self.path.removeprefix("datasets:"))

    @property
    def display_name(self) -> str:
        if self.name:
            return self.name
        if self.path:
            from pathlib import Path

            return Path(self.path.removeprefix("datasets:")).name.split(".")[0]
        return f"{self.format}_traces"


class ImportTracesConfig(StrictModel):
    """What `jobs.import_traces` runs: sources -> traces.parquet, rejected.parquet, stats.json in `output_dir`,
    the files a distill run writes, so shorten, sft_data and train take them unchanged."""

    sources: list[TraceSource] = Field(min_length=1)
    choose: Literal["all", "first_passing", "shortest_passing"] = Field(
        "first_passing", description="Several teachers' traces for one item: keep 'all' (one SFT row each), the "
        "'first_passing' in teacher_order, or the 'shortest_passing' (fewest reasoning words).",
    )
    teacher_order: list[str] = Field(default_factory=list, description="Preference order of teachers for 'first_passing' and ties.")
    filters: TraceFilters = Field(default_factory=TraceFilters)
    policy: PolicySpec = Field(None, description="The policy recorded with the traces (None = Aegis 2.0 taxonomy).")
    tokenizer: str | None = Field(None, description="Count reasoning tokens with this tokenizer (local path, alias or hub id).")
    output_dir: str = "outputs/import_traces"
