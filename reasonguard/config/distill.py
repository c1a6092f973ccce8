"""`DistillConfig` (teacher traces) and `ShortenConfig` (reasoning budgets): one typed config per job."""

from __future__ import annotations

from pydantic import Field, model_validator

from reasonguard.config.base import StrictModel
from reasonguard.config.common import DataSource, PipelineSettings, PolicySpec, RayConfig, SamplingSettings
from reasonguard.config.engine import EngineConfig


class TraceFilters(StrictModel):
    """Rules a teacher trace must pass to be kept; each failed rule is a named drop reason in stats.json."""

    require_prompt_match: bool = Field(True, description="Drop traces whose prompt verdict differs from the gold label.")
    require_response_match: bool = Field(
        True, description="Drop traces whose response verdict differs from the gold label (when the item has one)."
    )
    min_reasoning_words: int = Field(5, ge=0, description="Shorter reasoning (in words) is dropped as 'too_short'.")
    max_reasoning_words: int | None = Field(2000, ge=1, description="Longer reasoning (in words) is dropped as 'too_long'.")
    min_reasoning_tokens: int | None = Field(None, ge=0, description="Bound in tokens (needs `tokenizer`), 'too_short'.")
    max_reasoning_tokens: int | None = Field(None, ge=1, description="Bound in tokens (needs `tokenizer`), 'too_long'.")
    ngram_size: int = Field(4, ge=2, description="Word n-gram size of the repetition check.")
    max_repeated_ngram_fraction: float = Field(
        0.4, gt=0, le=1, description="Drop as 'repetition' when more than this fraction of word n-grams are repeats."
    )
    min_words_for_ngram_check: int = Field(30, ge=1, description="Reasoning shorter than this skips the n-gram check.")
    max_sentence_repeats: int = Field(2, ge=1, description="Drop as 'repetition' when one sentence occurs more often.")
    max_word_run: int = Field(6, ge=2, description="Drop as 'repetition' when one word repeats this often in a row.")
    check_leakage: bool = Field(True, description="Drop traces that quote the given label ('label_leakage').")

    @model_validator(mode="after")
    def _bounds(self) -> "TraceFilters":
        if self.max_reasoning_words is not None and self.max_reasoning_words < self.min_reasoning_words:
            raise ValueError("max_reasoning_words must be >= min_reasoning_words")
        if None not in (self.min_reasoning_tokens, self.max_reasoning_tokens) and self.max_reasoning_tokens < self.min_reasoning_tokens:
            raise ValueError("max_reasoning_tokens must be >= min_reasoning_tokens")
        return self


class DistillConfig(StrictModel):
    """What `jobs.distill` runs: the teacher `engine` over `data`, writing `output_dir/traces.parquet`."""

    engine: EngineConfig = Field(description="The teacher: a local vLLM (tensor parallel on GPUs), transformers, or an "
                                 "OpenAI-compatible endpoint (kind 'openai').")
    data: list[DataSource] = Field(min_length=1, description="Labelled training data (items without a prompt label are skipped).")
    sampling: SamplingSettings = Field(
        default_factory=lambda: SamplingSettings(temperature=0.6, top_p=0.95, max_tokens=1024),
        description="Teacher decoding (max_tokens bounds the whole trace plus the verdict lines).",
    )
    max_sentences: int = Field(8, ge=1, description="The teacher prompt asks for at most this many sentences.")
    constrained: bool = Field(
        False, description="Hold the teacher to the trace format with verdict-safe decoding (a think block, closed in "
        "time, then the two verdict lines; the verdict itself stays the teacher's choice, so the gold-label filter "
        "still judges it). For small teachers that drift from the format; local engines only (vllm, transformers).",
    )
    policy: PolicySpec = Field(None, description="None = Aegis 2.0 taxonomy; a list of categories; or free text.")
    filters: TraceFilters = Field(default_factory=TraceFilters)
    tokenizer: str | None = Field(
        None, description="Tokenizer (alias, path or hub id) that counts reasoning tokens; None = the teacher's own "
        "for local engines, words for an HTTP teacher.",
    )
    output_dir: str = "outputs/distill"
    ray: RayConfig = Field(default_factory=RayConfig)
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)

    @model_validator(mode="after")
    def _unique_names(self) -> "DistillConfig":
        names = [d.display_name for d in self.data]
        if len(set(names)) != len(names):
            raise ValueError(f"data names must be unique (set 'name' to tell them apart): {names}")
        if self.constrained and self.engine.kind == "openai":
            raise ValueError("constrained: verdict-safe decoding runs inside a local engine (kind vllm or transformers); "
                             "an OpenAI-compatible teacher cannot take it")
        return self
