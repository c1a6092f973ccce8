"""The guard vocabulary is declared once: config, HTTP schema and core agree, and an invalid policy
fails where it is written (config load, HTTP edge) with one message."""

from __future__ import annotations

import typing

import pytest
from pydantic import ValidationError

from reasonguard import vocabulary


@pytest.mark.parametrize(
    ("policy", "message"),
    [([], "at least one category"), ("   ", "must not be empty"), (["ok", " "], "must not be blank"),
     ("x" * 20_001, "at most 20000 characters"), ([f"c{i}" for i in range(65)], "at most 64 items")],
)
def test_an_invalid_policy_fails_at_config_load_and_at_the_http_edge_alike(policy, message):
    from reasonguard.config.predict import PredictConfig
    from reasonguard.config.serve import GuardSettings
    from serve.schemas import GuardRequest

    for build in (
        lambda: GuardSettings(policy=policy),
        lambda: PredictConfig.model_validate({"engine": {"kind": "vllm", "model": "tiny"}, "data": [{"dataset": "demo"}], "policy": policy}),
        lambda: GuardRequest(prompt="hi", policy=policy),
    ):
        with pytest.raises(ValidationError, match=message):
            build()


def test_the_names_are_the_same_objects_everywhere():
    from reasonguard import prompts, verdict
    from reasonguard.sft import select as sft
    from reasonguard.config import common, train
    from serve import schemas

    assert prompts.Mode is common.Mode is schemas.Mode is vocabulary.Mode
    assert verdict.HarmValue is schemas.HarmValue is vocabulary.HarmValue
    assert sft.SftMode is train.SftMode is vocabulary.SftMode
    assert typing.get_args(vocabulary.Mode) == vocabulary.MODES == ("think", "no_think")
    assert common.PolicySpec is schemas.PolicySpec is vocabulary.PolicySpec


def test_valid_specs_pass_unchanged():
    from reasonguard.config.serve import GuardSettings

    assert GuardSettings(policy=["Violence", "Fraud"]).policy == ["Violence", "Fraud"]
    assert GuardSettings(policy="Only cooking.").policy == "Only cooking."
    assert GuardSettings().policy is None
