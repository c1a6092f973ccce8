import pytest

from reasonguard.config import ConfigError, load_config
from reasonguard.config.evaluate import EvaluateConfig
from reasonguard.config.experiment import ExperimentConfig
from reasonguard.config.mine import MineConfig

TRAIN = {"model": "tiny", "data": {"build": {"labelled": [{"dataset": "demo"}], "mode": "no_think"}}, "global_batch_size": 2,
         "micro_batch_size": 1}
EVAL = {"predict": {"data": [{"dataset": "demo"}], "modes": ["no_think"]}}


@pytest.mark.parametrize("name", ["sample_efficiency", "budget", "dual_mode", "refinement", "custom_policy"])
def test_shipped_experiment_configs_validate(repo_root, name):
    for scale in ("local", "gpu"):
        path = repo_root / f"cluster/configs/experiment_{name}_{scale}.yaml"
        cfg = load_config(path, ExperimentConfig)
        assert cfg.study == name and cfg.sweep()


def test_each_variant_overrides_its_study_field(tmp_path):
    cfg = ExperimentConfig(study="sample_efficiency", values=[4, 8], train=TRAIN, evaluate=EVAL, output_dir=str(tmp_path))
    a, b = (cfg.train_config(cfg.variant_name(v), v) for v in cfg.sweep())
    assert (a.data.build.subset_size, b.data.build.subset_size) == (4, 8)
    assert a.output_dir.endswith("n4/train") and a.run_name == "n4"


def test_custom_policy_variants_differ_only_by_the_topic_data(tmp_path):
    train = {**TRAIN, "data": {"build": {"traces": ["/t/safety.parquet"], "mode": "dual"}}}
    topic = {"traces": ["/t/topic.parquet"], "topic_following": {"dataset": "topic_following_train", "size": 8}}
    cfg = ExperimentConfig(study="custom_policy", train=train, evaluate=EVAL, topic_data=topic, output_dir=str(tmp_path))
    assert cfg.sweep() == ["with_topic", "without_topic"]
    with_topic, without = (cfg.train_config(cfg.variant_name(v), v) for v in cfg.sweep())
    assert with_topic.data.build.traces == ["/t/safety.parquet", "/t/topic.parquet"]
    assert with_topic.data.build.topic_following.dataset == "topic_following_train"
    assert without.data.build.traces == ["/t/safety.parquet"] and without.data.build.topic_following is None
    assert with_topic.output_dir.endswith("with_topic/train") and without.run_name == "without_topic"
    assert with_topic.data.build.model_dump(exclude={"traces", "topic_following"}) == \
        without.data.build.model_dump(exclude={"traces", "topic_following"})


def test_custom_policy_errors_name_the_problem():
    with pytest.raises(ValueError, match="topic_data"):
        ExperimentConfig(study="custom_policy", train=TRAIN, evaluate=EVAL)
    with pytest.raises(ValueError, match="not \\['size'\\]"):
        ExperimentConfig(study="custom_policy", train=TRAIN, evaluate=EVAL, topic_data={"size": 3})
    with pytest.raises(ValueError, match="with_topic"):
        ExperimentConfig(study="custom_policy", values=["both"], train=TRAIN, evaluate=EVAL, topic_data={"traces": ["x"]})
    mixed = {**TRAIN, "data": {"build": {**TRAIN["data"]["build"], "topic_following": {"size": 4}}}}
    with pytest.raises(ValueError, match="without_topic"):
        ExperimentConfig(study="custom_policy", train=mixed, evaluate=EVAL, topic_data={"traces": ["x"]})


def test_experiment_errors_name_the_problem():
    with pytest.raises(ValueError, match="mine"):
        ExperimentConfig(study="refinement", train=TRAIN, evaluate=EVAL)
    with pytest.raises(ValueError, match="guards"):
        ExperimentConfig(study="budget", train=TRAIN, evaluate={**EVAL, "guards": []})
    with pytest.raises(ValueError, match="experiment.train"):
        ExperimentConfig(study="sample_efficiency", values=[0], train=TRAIN, evaluate=EVAL)


def test_mine_config_fills_the_difficult_set_into_training():
    cfg = MineConfig(guard={"kind": "vllm", "model": "/ckpt"}, pool=[{"dataset": "demo"}],
                     train={k: v for k, v in TRAIN.items() if k != "model"})
    train = cfg.train_config("/out/difficult.parquet")
    assert train.model == "/ckpt" and train.data.build.traces == ["/out/difficult.parquet"]
    with pytest.raises(ValueError, match="train.model"):
        MineConfig(guard={"kind": "vllm", "model": "x"}, pool=[{"dataset": "demo"}], train=TRAIN)
    with pytest.raises(ValueError, match="pool"):
        MineConfig(guard={"kind": "vllm", "model": "x"})


def test_evaluate_config_rejects_engine_in_shared_settings(repo_root):
    for scale in ("local", "gpu"):
        load_config(repo_root / f"cluster/configs/evaluate_{scale}.yaml", EvaluateConfig)
    with pytest.raises(ConfigError, match="predict.engine"):
        from reasonguard.config import validate_config

        validate_config(EvaluateConfig, {"guards": [{"name": "a", "engine": {"kind": "vllm", "model": "x"}}],
                                         "predict": {**EVAL["predict"], "engine": {"kind": "vllm", "model": "y"}}})
