"""`PredictConfig`: a guard over datasets or the evaluation suite, N samples per item, one or both modes."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from reasonguard.config.base import StrictModel
from reasonguard.config.common import DataSource, DecodingSettings, Mode, PipelineSettings, PolicySpec, RayConfig, SamplingSettings
from reasonguard.config.engine import EngineConfig


class PredictConfig(StrictModel):
    """What `jobs.predict` runs: `engine` over `data` (or a whole `suite`), writing `output_dir/predictions/`."""

    engine: EngineConfig
    data: list[DataSource] = Field(default_factory=list, description="Datasets to run (besides `suite`).")
    suite: Literal["guardreasoner", "extra", "all"] | None = Field(
        None, description="A registered evaluation suite: 'guardreasoner' (the ten test sets), 'extra', or 'all'."
    )
    suite_limit: int | None = Field(None, ge=1, description="First N items of every suite dataset (smoke runs).")
    suite_sample: int | None = Field(
        None, ge=1, description="A seeded random N items of every suite dataset (first-N can be one class only)."
    )
    suite_seed: int = 0
    datasets_root: str | None = Field(None, description="Folder of vendored datasets for the suite (default: env/default).")
    modes: list[Mode] = Field(default_factory=lambda: ["no_think", "think"], min_length=1)
    n_samples: int = Field(1, ge=1, description="Samples per item and mode (paper: several, for mean and majority vote).")
    sampling: SamplingSettings = Field(default_factory=SamplingSettings)
    max_tokens_by_mode: dict[Mode, int] = Field(
        default_factory=dict, description="Per-mode max_tokens overriding sampling.max_tokens (no_think needs few)."
    )
    policy: PolicySpec = Field(None, description="None = Aegis 2.0 taxonomy; a list of categories; or free text.")
    decoding: DecodingSettings = Field(default_factory=DecodingSettings)
    categories: bool = Field(
        False, description="Also ask for the violated categories (`Safety categories:` line; codes of the taxonomy): "
        "rows get `pred_categories`, metrics a per-category table where the data's categories map (docs/categories.md).")
    output_dir: str = "outputs/predict"
    ray: RayConfig = Field(default_factory=RayConfig)
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)

    @model_validator(mode="after")
    def _has_data(self) -> "PredictConfig":
        if not self.data and self.suite is None:
            raise ValueError("give 'data' (a list of datasets) and/or 'suite'")
        names = [d.display_name for d in self.data]
        if len(set(names)) != len(names):
            raise ValueError(f"data names must be unique (set 'name' to tell them apart): {names}")
        if len(set(self.modes)) != len(self.modes):
            raise ValueError(f"modes repeat: {self.modes}")
        return self

    def sampling_by_mode(self) -> dict:
        """SamplingConfig per mode (n=1: each sample is its own row with seed + k)."""
        return self.sampling.by_mode(self.modes, self.max_tokens_by_mode)
