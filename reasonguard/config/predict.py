"""`PredictConfig`: a guard over datasets or the evaluation suite, N samples per item, one or both modes."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from reasonguard.config.base import StrictModel
from reasonguard.config.common import DataSource, DecodingSettings, Mode, PipelineSettings, PolicySpec, RayConfig, SamplingSettings
from reasonguard.engines.config import EngineConfig


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
        return {m: self.sampling.to_sampling(max_tokens=self.max_tokens_by_mode.get(m, self.sampling.max_tokens)) for m in self.modes}

    def calibration(self):
        """The Calibration `decoding.calibration` names (None: raw probabilities)."""
        from reasonguard.calibration import find_calibration

        model_dir = None
        if self.engine.kind != "openai":
            from reasonguard.models import resolve_model

            model_dir = resolve_model(self.engine.model)
        return find_calibration(self.decoding.calibration, model_dir)

    def load_datasets(self) -> dict[str, list]:
        """{name: examples} of `data` and the suite entries (suite entries are named as in the suite)."""
        from reasonguard.datasets import EVAL_SUITE, EXTRA_SUITE

        out = {d.display_name: d.load() for d in self.data}
        entries = {"guardreasoner": EVAL_SUITE, "extra": EXTRA_SUITE, "all": EVAL_SUITE + EXTRA_SUITE}.get(self.suite or "", ())
        for entry in entries:
            examples = entry.load(root=self.datasets_root, limit=self.suite_limit)
            if self.suite_sample is not None and self.suite_sample < len(examples):
                import random

                keep = sorted(random.Random(self.suite_seed).sample(range(len(examples)), self.suite_sample))
                examples = [examples[i] for i in keep]
            out[entry.name] = examples
        return out
