"""`ShortenConfig`: what `jobs.shorten` runs (reasoning budgets of a trace table)."""

from __future__ import annotations

from pydantic import Field, model_validator

from reasonguard.config.base import StrictModel
from reasonguard.config.common import PipelineSettings, RayConfig, SamplingSettings
from reasonguard.config.engine import EngineConfig


class ShortenConfig(StrictModel):
    """What `jobs.shorten` runs: an LLM rewrite of each kept trace into at most N sentences per budget."""

    traces: str = Field(description="traces.parquet of a distill run, or that run's output_dir.")
    engine: EngineConfig | None = Field(
        None, description="The rewriter (often the teacher itself); null = no LLM: every trace over a budget is cut "
        "at sentence boundaries (keeping the prompt part and the response part's conclusion), without Ray.",
    )
    budgets: list[int] = Field(default_factory=lambda: [1, 3], min_length=1, description="Sentence budgets (paper: 1 and 3).")
    sampling: SamplingSettings = Field(
        default_factory=lambda: SamplingSettings(temperature=0.3, top_p=0.95, max_tokens=256),
        description="Rewrite decoding; keep max_tokens small, a rewrite is a few sentences.",
    )
    tokenizer: str | None = Field(
        None, description="Tokenizer for the token-length statistics; None = the rewriter's own for local engines, "
        "words for an HTTP rewriter.",
    )
    limit: int | None = Field(None, ge=1, description="Only the first N traces (smoke runs).")
    output_dir: str = "outputs/shorten"
    ray: RayConfig = Field(default_factory=RayConfig)
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)

    @model_validator(mode="after")
    def _budgets(self) -> "ShortenConfig":
        if any(b < 1 for b in self.budgets) or len(set(self.budgets)) != len(self.budgets):
            raise ValueError(f"budgets must be distinct positive sentence counts, got {self.budgets}")
        if self.engine is None and self.tokenizer is None:
            raise ValueError("without an 'engine' (no rewriter), give 'tokenizer' for the token statistics (e.g. smollm2)")
        return self
