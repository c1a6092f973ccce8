import json

import pytest

from reasonguard.datasets.sources import load_predict_datasets, load_source
from reasonguard.config import ConfigError, validate_config
from reasonguard.config.common import DataSource, SamplingSettings
from reasonguard.config.demo import DemoConfig
from reasonguard.config.predict import PredictConfig

ENGINE = {"kind": "vllm", "model": "tiny"}


def test_data_source_needs_exactly_one_origin():
    with pytest.raises(ValueError, match="exactly one"):
        DataSource()
    with pytest.raises(ValueError, match="exactly one"):
        DataSource(dataset="demo", path="x.jsonl", columns={"prompt": "p"})
    with pytest.raises(ValueError, match="columns"):
        DataSource(path="x.jsonl")


def test_unknown_dataset_is_named_with_the_registered_ones():
    with pytest.raises(ValueError, match="unknown dataset 'nope'.*demo"):
        DataSource(dataset="nope")


def test_split_limit_and_seeded_sample():
    test = load_source(DataSource(dataset="demo", split="test"))
    assert test and all(e.split == "test" for e in test)
    assert len(load_source(DataSource(dataset="demo", split="test", limit=5))) == 5
    a = load_source(DataSource(dataset="demo", sample=7, seed=1))
    b = load_source(DataSource(dataset="demo", sample=7, seed=1))
    c = load_source(DataSource(dataset="demo", sample=7, seed=2))
    assert [e.id for e in a] == [e.id for e in b] and len(a) == 7
    assert [e.id for e in a] != [e.id for e in c]


def test_empty_source_is_an_error():
    with pytest.raises(ValueError, match="no rows of split .nonexistent. \\(splits present: test, train\\)"):
        load_source(DataSource(dataset="demo", split="nonexistent"))


def test_table_source_with_column_mapping(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join(json.dumps({"text": f"q{i}", "y": i % 2}) for i in range(4)))
    rows = load_source(DataSource(path=str(path), columns={"prompt": "text", "prompt_harm_label": "y"}))
    assert [r.prompt_harm_label for r in rows] == ["unharmful", "harmful", "unharmful", "harmful"]
    assert rows[0].source == "mine"


def test_sampling_settings_to_sampling_config():
    s = SamplingSettings().to_sampling(max_tokens=24)
    assert (s.temperature, s.top_p, s.max_tokens, s.n) == (0.6, 0.95, 24, 1)


def test_predict_config_per_mode_tokens_and_errors():
    cfg = PredictConfig(engine=ENGINE, data=[{"dataset": "demo"}], max_tokens_by_mode={"no_think": 24})
    by_mode = cfg.sampling_by_mode()
    assert by_mode["no_think"].max_tokens == 24 and by_mode["think"].max_tokens == 400
    with pytest.raises(ConfigError, match="data"):
        validate_config(PredictConfig, {"engine": ENGINE})
    with pytest.raises(ConfigError, match="modes"):
        validate_config(PredictConfig, {"engine": ENGINE, "data": [{"dataset": "demo"}], "modes": ["fast"]})
    with pytest.raises(ConfigError, match="unique"):
        validate_config(PredictConfig, {"engine": ENGINE, "data": [{"dataset": "demo"}, {"dataset": "demo"}]})
    with pytest.raises(ConfigError, match="engine.kind"):
        validate_config(PredictConfig, {"engine": {"kind": "tpu", "model": "x"}, "data": [{"dataset": "demo"}]})


def test_suite_is_loaded_under_suite_names():
    cfg = PredictConfig(engine=ENGINE, suite="guardreasoner", suite_limit=2)
    try:
        loaded = load_predict_datasets(cfg)
    except FileNotFoundError:
        pytest.skip("vendored datasets not present")
    assert "xstest_response_refusal" in loaded and all(len(v) <= 2 for v in loaded.values())


def test_demo_config_checks_stage_sections(repo_root):
    from reasonguard.config import load_config

    cfg = load_config(repo_root / "cluster/configs/demo_local.yaml", DemoConfig)
    assert "predict" in cfg.stages
    with pytest.raises(ValueError, match="'train'"):
        DemoConfig(stages=["train", "predict"], predict={"engine": ENGINE, "data": [{"dataset": "demo"}]})


def test_offset_and_limit_split_a_dataset_without_overlap():
    first = load_source(DataSource(dataset="demo", split="train", limit=20))
    rest = load_source(DataSource(dataset="demo", split="train", offset=20))
    assert len(first) == 20 and rest and not {e.id for e in first} & {e.id for e in rest}


def test_overrides_reach_into_lists_and_fail_clearly(tmp_path):
    from reasonguard.config import load_config, parse_overrides

    path = tmp_path / "p.yaml"
    path.write_text("engine: {kind: vllm, model: tiny}\ndata: [{dataset: demo}]\n")
    cfg = load_config(path, PredictConfig, parse_overrides(["data.0.limit=3", "data.0.split=test"]))
    assert (cfg.data[0].limit, cfg.data[0].split) == (3, "test")
    with pytest.raises(ConfigError, match="not an index"):
        load_config(path, PredictConfig, parse_overrides(["data.5.limit=3"]))
