"""ServeConfig, the Serve YAMLs under cluster/serve/ and the deployment options build_app applies (no Ray started)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from reasonguard.config import ConfigError, load_config
from reasonguard.config.serve import ServeConfig

REPO = Path(__file__).resolve().parents[2]
SERVE_YAMLS = sorted((REPO / "cluster" / "serve").glob("guard_serve*.yaml"))


@pytest.mark.parametrize("name", ["serve_local.yaml", "serve_gpu.yaml"])
def test_shipped_configs_validate(name):
    config = load_config(REPO / "cluster" / "configs" / name, ServeConfig)
    assert config.engine.kind == "vllm" and config.limits.max_pending_items >= config.batching.max_batch_size


def test_config_errors_name_the_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("engine: {kind: vllm, model: tiny}\nreplica: {num_replicas: 1, max_ongoing_requests: 4}\nbatching: {max_batch_size: 16}\n")
    with pytest.raises(ConfigError, match="max_ongoing_requests"):
        load_config(bad, ServeConfig)
    bad.write_text("engine: {kind: vllm, model: tiny}\nautoscaling: {min_replicas: 3, max_replicas: 2}\n")
    with pytest.raises(ConfigError, match="min_replicas"):
        load_config(bad, ServeConfig)
    bad.write_text("engine: {kind: vllm, model: tiny}\nlimits: {max_body_byte: 10}\n")
    with pytest.raises(ConfigError, match="limits.max_body_byte"):
        load_config(bad, ServeConfig)


def test_deployment_options():
    from serve.app import deployment_options

    auto = ServeConfig.model_validate({"engine": {"kind": "vllm", "model": "tiny"}, "replica": {"num_gpus": 1, "max_queued_requests": 8}})
    opts = deployment_options(auto)
    assert opts["autoscaling_config"]["max_replicas"] == 1 and "num_replicas" not in opts
    assert opts["ray_actor_options"] == {"num_cpus": 1, "num_gpus": 1}
    assert opts["backpressure_config"] == {"status_code": 503, "retry_after_s": 2}
    fixed = ServeConfig.model_validate({"engine": {"kind": "vllm", "model": "tiny"}, "replica": {"num_replicas": 2, "env_vars": {"A": "1"}}})
    opts = deployment_options(fixed)
    assert opts["num_replicas"] == 2 and "autoscaling_config" not in opts and "backpressure_config" not in opts
    assert opts["ray_actor_options"]["runtime_env"] == {"env_vars": {"A": "1"}}
    from ray import serve

    serve.deployment(**opts)  # Serve itself accepts every option


@pytest.mark.parametrize("path", SERVE_YAMLS, ids=lambda p: p.name)
def test_serve_yamls_are_valid_and_build(path):
    """The files `serve run`/`serve deploy` and the RayService use: Serve's own schema, then our builder."""
    from ray.serve.schema import ServeDeploySchema

    from serve.app import build_app

    raw = yaml.safe_load(path.read_text())
    ServeDeploySchema.model_validate(raw)
    for app in raw["applications"]:
        assert app["import_path"] == "serve.app:build_app"
        built = build_app(app["args"])
        ingress = built._bound_deployment
        model = ingress.init_args[0]._bound_deployment
        assert (ingress.name, model.name) == ("GuardIngress", "GuardDeployment")
        config = ServeConfig.model_validate(model.init_args[0])
        assert config.app_name == app["name"] and ingress.init_args[1] == model.init_args[0]


def test_build_app_args_errors():
    from serve.app import build_app

    with pytest.raises(ValueError, match="args.config"):
        build_app({})
    with pytest.raises(ValueError, match="unknown build_app args"):
        build_app({"config": "cluster/configs/serve_local.yaml", "confg": 1})
    app = build_app({"config": "cluster/configs/serve_local.yaml", "overrides": {"replica.num_replicas": 3}})
    assert app._bound_deployment.init_args[0]._bound_deployment._deployment_config.num_replicas == 3
    assert app._bound_deployment._deployment_config.num_replicas == 1  # the ingress


def test_engine_mode_async_needs_vllm():
    with pytest.raises(ValueError, match="engine_mode 'async' needs engine.kind 'vllm'"):
        ServeConfig.model_validate({"engine": {"kind": "openai", "model": "m", "base_url": "http://x"}, "engine_mode": "async"})
    assert ServeConfig.model_validate({"engine": {"kind": "vllm", "model": "tiny"}, "engine_mode": "async"}).engine_mode == "async"


def test_serve_batching_gets_the_synchronous_engine():
    """@serve.batch calls the engine's synchronous generate(), which AsyncLLM does not have."""
    vllm = {"kind": "vllm", "model": "tiny"}
    assert ServeConfig.model_validate({"engine": vllm}).resolved_engine_mode == "async"
    serve_batch = {"strategy": "serve"}
    assert ServeConfig.model_validate({"engine": vllm, "batching": serve_batch}).resolved_engine_mode == "batch"
    with pytest.raises(ValueError, match="drives the synchronous engine"):
        ServeConfig.model_validate({"engine": vllm, "engine_mode": "async", "batching": serve_batch})
