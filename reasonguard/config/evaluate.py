"""`EvaluateConfig`: one or more guards over the suite (or any datasets), both modes, one report."""

from __future__ import annotations

from pydantic import Field, model_validator

from reasonguard.config.base import StrictModel
from reasonguard.config.predict import PredictConfig
from reasonguard.config.engine import EngineConfig


class GuardSpec(StrictModel):
    """A guard to compare: a name for the report's rows and the engine that runs it."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$", description="Row name in the report (also a folder name).")
    engine: EngineConfig
    budget: str | None = Field(None, description="Reasoning budget it was trained with (e.g. 'full', '3', '1'), for the budget plots.")


class CalibrationFit(StrictModel):
    """Temperature scaling of P(harmful), fitted by the evaluate job on a validation split of the items."""

    fit: bool = Field(True, description="Fit a calibration per guard (temperature per verdict line and mode).")
    validation_fraction: float = Field(0.3, gt=0, lt=1, description="Share of items (seeded hash of dataset and id) used to fit.")
    seed: int = Field(0, description="Seed of the item split.")
    min_samples: int = Field(10, ge=2, description="Fewer scored validation samples for a line and mode: left uncalibrated.")
    save_beside_checkpoint: bool = Field(
        False, description="Also write calibration.json next to a local checkpoint, where predict and serve pick it up ('auto').",
    )


class EvaluateConfig(StrictModel):
    """`guards` x (`predict` settings minus its engine): predictions, metrics.json, report.md and plots."""

    guards: list[GuardSpec] = Field(min_length=1)
    predict: dict = Field(description="A PredictConfig without `engine` and `output_dir` (data/suite, modes, n_samples, ...).")
    output_dir: str = "outputs/evaluate"
    title: str = "Guard evaluation"
    calibration: CalibrationFit = Field(default_factory=CalibrationFit)

    @model_validator(mode="after")
    def _check(self) -> "EvaluateConfig":
        names = [g.name for g in self.guards]
        if len(set(names)) != len(names):
            raise ValueError(f"guard names must be unique: {names}")
        for key in ("engine", "output_dir"):
            if key in self.predict:
                raise ValueError(f"predict.{key} is set per guard by the evaluate job; remove it")
        self.predict_config(self.guards[0])  # validate the shared settings now
        return self

    def predict_config(self, guard: GuardSpec) -> PredictConfig:
        from reasonguard.config.base import validate_config

        data = {**self.predict, "engine": guard.engine.model_dump(exclude_unset=True), "output_dir": f"{self.output_dir}/{guard.name}"}
        return validate_config(PredictConfig, data, "evaluate.predict")
