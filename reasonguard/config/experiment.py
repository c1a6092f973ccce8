"""`ExperimentConfig`: one study of the paper (train variants -> evaluate them -> one report)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from reasonguard.config.base import StrictModel, deep_merge, validate_config

Study = Literal["sample_efficiency", "budget", "dual_mode", "refinement", "custom_policy"]

DEFAULT_VALUES: dict[str, list[Any]] = {
    "sample_efficiency": [500, 1000, 2500, 5000],
    "budget": ["full", 3, 1],
    "dual_mode": ["dual", "think"],
    "refinement": ["difficult", "random"],
    "custom_policy": ["with_topic", "without_topic"],
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
    topic_data: dict | None = Field(
        None, description="custom_policy: what the 'with_topic' variant adds to train.data.build: `traces` (topic-following "
        "trace tables, appended to the build's own) and/or `topic_following` (the label-only mix); 'without_topic' trains "
        "on train.data.build alone.",
    )
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
        if self.study == "custom_policy":
            self._check_custom_policy()
        for key in ("guards", "output_dir"):
            if key in self.evaluate:
                raise ValueError(f"evaluate.{key} is set by the experiment job; remove it")
        for value in self.sweep():
            self.train_config(self.variant_name(value), value)  # every variant's config is valid before training starts
        return self

    def _check_custom_policy(self) -> None:
        bad = set(self.sweep()) - {"with_topic", "without_topic"}
        if bad:
            raise ValueError(f"custom_policy values are 'with_topic' and/or 'without_topic', not {sorted(bad)}")
        if not self.topic_data:
            raise ValueError("study 'custom_policy' needs 'topic_data': the topic-following traces and/or mix that the "
                             "'with_topic' variant adds to train.data.build")
        unknown = set(self.topic_data) - {"traces", "topic_following"}
        if unknown:
            raise ValueError(f"topic_data holds 'traces' and/or 'topic_following', not {sorted(unknown)}")
        if "topic_following" in ((self.train.get("data") or {}).get("build") or {}):
            raise ValueError("study 'custom_policy': put the topic-following mix in topic_data, not in train.data.build "
                             "(the 'without_topic' variant must train without it)")

    def _with_topic(self) -> dict:
        """train.data.build fields of the 'with_topic' variant: the topic traces after the build's own, and the mix."""
        build = (self.train.get("data") or {}).get("build") or {}
        extra = dict(self.topic_data or {})
        out = {"traces": [*build.get("traces", []), *extra.pop("traces", [])]}
        return {**out, **extra}

    def sweep(self) -> list[Any]:
        return list(self.values if self.values is not None else DEFAULT_VALUES[self.study])

    def variant_name(self, value: Any) -> str:
        prefix = {"sample_efficiency": "n", "budget": "budget-", "dual_mode": "", "refinement": "refined-",
                  "custom_policy": ""}[self.study]
        return f"{prefix}{value}"

    def train_config(self, name: str, value: Any = None, **overrides: Any):
        from reasonguard.config.train import TrainConfig

        data = {}
        if self.study in STUDY_FIELD and value is not None:
            data = {"data": {"build": {STUDY_FIELD[self.study]: value}}}
        if self.study == "custom_policy" and value == "with_topic":
            data = {"data": {"build": self._with_topic()}}
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
