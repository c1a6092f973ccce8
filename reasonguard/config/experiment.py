"""`ExperimentConfig`: one study of the paper (train variants -> evaluate them -> one report)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from reasonguard.config.base import StrictModel, deep_merge, validate_config

Study = Literal["sample_efficiency", "budget", "dual_mode", "refinement"]

DEFAULT_VALUES: dict[str, list[Any]] = {
    "sample_efficiency": [500, 1000, 2500, 5000],
    "budget": ["full", 3, 1],
    "dual_mode": ["dual", "think"],
    "refinement": ["difficult", "random"],
}
# Which SftDataConfig field each study varies.
STUDY_FIELD = {"sample_efficiency": "subset_size", "budget": "budget", "dual_mode": "mode"}


class ExperimentConfig(StrictModel):
    """`train` is the base TrainConfig every variant starts from; `evaluate` an EvaluateConfig without guards."""

    study: Study
    values: list[Any] | None = Field(None, description="The values the study sweeps (defaults: the paper's).")
    train: dict = Field(description="Base TrainConfig (with data.build); each variant overrides one field of data.build.")
    evaluate: dict = Field(description="EvaluateConfig without `guards` and `output_dir`: {title, predict: {...}}.")
    mine: dict | None = Field(None, description="refinement: a MineConfig without `guard` and `train` (pool, n_samples, ...).")
    guard_engine: dict = Field(
        default_factory=lambda: {"kind": "vllm", "max_model_len": 2048},
        description="EngineConfig fields (all but `model`) of every evaluated guard.",
    )
    include_base: bool = Field(False, description="Also evaluate the untrained student as a guard.")
    output_dir: str = "outputs/experiment"

    @model_validator(mode="after")
    def _check(self) -> "ExperimentConfig":
        if self.study == "refinement":
            if self.mine is None:
                raise ValueError("study 'refinement' needs a 'mine' section (the pool to mine)")
            bad = set(self.sweep()) - {"difficult", "random"}
            if bad:
                raise ValueError(f"refinement values are 'difficult' and/or 'random', not {sorted(bad)}")
        for key in ("guards", "output_dir"):
            if key in self.evaluate:
                raise ValueError(f"evaluate.{key} is set by the experiment job; remove it")
        for value in self.sweep():
            self.train_config(self.variant_name(value), value)  # every variant's config is valid before training starts
        return self

    def sweep(self) -> list[Any]:
        return list(self.values if self.values is not None else DEFAULT_VALUES[self.study])

    def variant_name(self, value: Any) -> str:
        prefix = {"sample_efficiency": "n", "budget": "budget-", "dual_mode": "", "refinement": "refined-"}[self.study]
        return f"{prefix}{value}"

    def train_config(self, name: str, value: Any = None, **overrides: Any):
        from reasonguard.config.train import TrainConfig

        data = {}
        if self.study in STUDY_FIELD and value is not None:
            data = {"data": {"build": {STUDY_FIELD[self.study]: value}}}
        merged = deep_merge(deep_merge(self.train, data), {"output_dir": f"{self.output_dir}/{name}/train", "run_name": name})
        return validate_config(TrainConfig, deep_merge(merged, overrides), f"experiment.train[{name}]")

    def evaluate_config(self, guards: list[dict]):
        from reasonguard.config.evaluate import EvaluateConfig

        data = {"title": f"Study: {self.study}", **self.evaluate, "guards": guards, "output_dir": f"{self.output_dir}/evaluate"}
        return validate_config(EvaluateConfig, data, "experiment.evaluate")

    def mine_config(self, guard_model: str, output_dir: str):
        from reasonguard.config.mine import MineConfig

        data = {**(self.mine or {}), "guard": {**self.guard_engine, "model": guard_model}, "output_dir": output_dir}
        return validate_config(MineConfig, data, "experiment.mine")
