"""`SftDataConfig`: which examples become SFT chats, and how (jobs.sft_data, and `TrainConfig.data.build`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from reasonguard.config.base import StrictModel
from reasonguard.config.common import DataSource, PolicySpec
from reasonguard.vocabulary import SftMode

Budget = Literal["full"] | int


class TopicFollowingMix(StrictModel):
    """Custom-policy data (CantTalkAboutThis): each turn judged against its scenario's own policy text."""

    dataset: str = Field("topic_following", description="Registered dataset name of the topic-following data.")
    root: str | None = Field(None, description="Datasets folder (default: REASONGUARD_DATASETS_DIR / the shared folder).")
    size: int | None = Field(None, ge=1, description="Examples to mix in (stratified by label, seeded); None = all labelled.")


class CategoryTargets(StrictModel):
    """Teach the optional categories line: some rows ask for the violated Aegis 2.0 codes and answer them,
    mapped from the sources' own categories (reasonguard.categories, docs/categories.md)."""

    ratio: float = Field(
        0.5, ge=0, le=1,
        description="Share of the eligible rows (benign ones, and harmful ones whose categories map) that ask for categories.",
    )
    lookup: list[DataSource] = Field(
        default_factory=list,
        description="Datasets whose categories are joined by prompt (normalised, as in reasonguard.hygiene) to trace or "
        "labelled examples without their own (e.g. HarmBench and SimpleSafetyTests for the GuardReasoner traces).",
    )


class SftDataConfig(StrictModel):
    """Which examples become SFT chats, and how: mode mix, reasoning budget, subset, topic-following mix."""

    traces: list[str] = Field(
        default_factory=list,
        description="Trace parquet files (or part folders) from distill/shorten: GuardExample columns + `reasoning` "
        "(+ `reasoning_<N>` per sentence budget). Rows with kept=false are skipped.",
    )
    labelled: list[DataSource] = Field(
        default_factory=list, description="Plain labelled data without traces: no_think targets only."
    )
    held_out: list[DataSource] = Field(
        default_factory=list,
        description="Test sets kept out of training: no example whose prompt (normalised, as in reasonguard.hygiene) "
        "appears in them becomes a row, so predict/evaluate can later score the guard on them.",
    )
    mode: SftMode = Field(
        "dual", description="'think' (reasoning targets only), 'no_think' (verdict only) or 'dual' (both; see think_ratio)."
    )
    think_ratio: float = Field(
        0.5, ge=0, le=1,
        description="dual: share of the examples that have a trace rendered in think mode (the rest: no_think). "
        "Examples without a trace are always no_think.",
    )
    dual_duplicate: bool = Field(
        False, description="dual: every example with a trace appears in both modes (think_ratio is then ignored)."
    )
    budget: Budget = Field(
        "full", description="Reasoning budget: 'full' (column `reasoning`) or N sentences (column `reasoning_<N>`; paper: 1, 3)."
    )
    subset_size: int | None = Field(
        None, ge=1, description="Random subset of this many source examples, stratified by label (paper: 500, 1k, 2.5k, 5k)."
    )
    topic_following: TopicFollowingMix | None = Field(None, description="Mix in topic-following (custom policy) data.")
    policy: PolicySpec = Field(None, description="Policy of the guard prompt: None = Aegis 2.0 taxonomy (topic rows keep their own).")
    categories: CategoryTargets | None = Field(
        None, description="Rows that ask for and answer the violated categories (default taxonomy only); None = none do.")
    seed: int = Field(0, description="Seed of the subset, the mode assignment and the output order.")
    output: str = Field("outputs/sft/sft.parquet", description="Where jobs.sft_data writes the SFT rows (.parquet or .jsonl).")

    @field_validator("budget", mode="before")
    @classmethod
    def _budget(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
        if isinstance(value, int) and not isinstance(value, bool) and value < 1:
            raise ValueError("a sentence budget must be >= 1")
        return value

    @model_validator(mode="after")
    def _has_input(self) -> "SftDataConfig":
        if not self.traces and not self.labelled and self.topic_following is None:
            raise ValueError("give at least one of 'traces', 'labelled' or 'topic_following'")
        if self.mode == "think" and (self.topic_following is not None or self.labelled):
            raise ValueError("mode 'think' needs traces for every example: 'labelled' and 'topic_following' data have "
                             "none (use mode 'dual', or distill them first)")
        if self.mode == "think" and not self.traces:
            raise ValueError("mode 'think' needs 'traces'")
        if self.categories is not None and self.policy is not None:
            raise ValueError("'categories' targets are Aegis 2.0 codes: they need the default taxonomy (policy: null)")
        return self
