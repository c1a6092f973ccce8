"""RayService serveConfigV2 is generated from cluster/serve/*.yaml: drift, generation rules, and
the Serve config's cross-references (import path, stage config, replica sizes vs worker pods)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from reasonguard.deploy import kuberay, kustomize

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_committed_serve_config_v2_matches_the_serve_configs():
    missing = [t.serve_config for t in kuberay.SERVE_TARGETS if not (REPO_ROOT / t.serve_config).exists()]
    assert not missing, f"{missing} missing from the checkout: nothing to compare serveConfigV2 with"
    drifts = kuberay.check_serve_configs(REPO_ROOT)
    assert not drifts, "serveConfigV2 drifted; run `python -m reasonguard.deploy.kuberay render-rayservice`:\n" + "\n".join(
        d.diff() for d in drifts
    )


def test_generation_sets_uri_working_dir_and_cluster_http():
    cfg = {
        "http_options": {"host": "127.0.0.1", "port": 9000, "request_timeout_s": 5},
        "applications": [
            {"name": "a", "import_path": "serve.app:build_app", "runtime_env": {"working_dir": ".", "env_vars": {"X": "1"}}},
            {"name": "b", "import_path": "serve.app:build_app"},
        ],
    }
    out = kuberay.build_serve_config_v2(cfg)
    assert out["http_options"] == {"host": "0.0.0.0", "port": 8000, "request_timeout_s": 5}
    assert out["applications"][0]["runtime_env"] == {"working_dir": kuberay.DEFAULT_WORKING_DIR_URI, "env_vars": {"X": "1"}}
    assert out["applications"][1]["runtime_env"] == {"working_dir": kuberay.DEFAULT_WORKING_DIR_URI}
    assert cfg["applications"][0]["runtime_env"]["working_dir"] == "."  # input untouched
    assert "runtime_env" not in kuberay.build_serve_config_v2(cfg, working_dir_uri=None)["applications"][1]
    s3 = kuberay.build_serve_config_v2(cfg, "s3://bucket/rg.zip")
    assert s3["applications"][0]["runtime_env"]["working_dir"] == "s3://bucket/rg.zip"
    with pytest.raises(ValueError, match="must be a URI"):
        kuberay.build_serve_config_v2(cfg, "/home/ray/reasonguard")
    with pytest.raises(ValueError, match="import_path"):
        kuberay.build_serve_config_v2({"applications": [{"name": "x"}]})
    with pytest.raises(ValueError, match="applications"):
        kuberay.build_serve_config_v2({"applications": []})


def test_replace_block_scalar_keeps_the_rest_of_the_file():
    text = "# head comment\nspec:\n  a: 1\n  serveConfigV2: |\n    old: 1\n\n    more: 2\n  rayClusterConfig:\n    x: 1 # note\n"
    out = kuberay.replace_block_scalar(text, "serveConfigV2", "new: 3\nlist:\n- 1\n")
    assert out == "# head comment\nspec:\n  a: 1\n  serveConfigV2: |\n    new: 3\n    list:\n    - 1\n  rayClusterConfig:\n    x: 1 # note\n"
    assert yaml.safe_load(out)["spec"]["serveConfigV2"] == "new: 3\nlist:\n- 1\n"
    with pytest.raises(ValueError, match="exactly one"):
        kuberay.replace_block_scalar(text + "serveConfigV2: x\n", "serveConfigV2", "a: 1\n")


def test_render_command_detects_and_repairs_drift(tmp_path, capsys):
    for target in kuberay.SERVE_TARGETS:
        for rel in (target.serve_config, target.manifest):
            (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO_ROOT / rel, tmp_path / rel)
    source = tmp_path / kuberay.SERVE_TARGETS[0].serve_config
    cfg = yaml.safe_load(source.read_text())
    cfg["applications"][0].setdefault("args", {})["overrides"] = {"replica.num_replicas": 7}
    source.write_text(yaml.safe_dump(cfg, sort_keys=False))

    assert kuberay.main(["--root", str(tmp_path), "render-rayservice", "--check"]) == 1
    assert "replica.num_replicas: 7" in capsys.readouterr().err
    manifest = tmp_path / kuberay.SERVE_TARGETS[0].manifest
    before = manifest.read_text()
    assert kuberay.main(["--root", str(tmp_path), "render-rayservice"]) == 0
    after = manifest.read_text()
    assert kuberay.main(["--root", str(tmp_path), "render-rayservice", "--check"]) == 0
    service = yaml.safe_load(after)
    assert yaml.safe_load(service["spec"]["serveConfigV2"])["applications"][0]["args"]["overrides"] == {"replica.num_replicas": 7}
    # Only the generated string changed: comments and the cluster spec are kept as written.
    assert service["spec"]["rayClusterConfig"] == yaml.safe_load(before)["spec"]["rayClusterConfig"]
    assert [l for l in after.splitlines() if l.startswith("#")] == [l for l in before.splitlines() if l.startswith("#")]


SERVE_CONFIGS = [t.serve_config for t in kuberay.SERVE_TARGETS]


@pytest.mark.parametrize("serve_config", SERVE_CONFIGS)
def test_serve_config_names_existing_code_and_stage_config(serve_config):
    cfg = yaml.safe_load((REPO_ROOT / serve_config).read_text())
    missing = []
    for app in cfg["applications"]:
        module = app["import_path"].split(":")[0]
        path = REPO_ROOT.joinpath(*module.split(".")).with_suffix(".py")
        if not path.exists():
            missing.append(str(path.relative_to(REPO_ROOT)))
        stage_config = (app.get("args") or {}).get("config")
        if stage_config and not (REPO_ROOT / stage_config).exists():
            missing.append(stage_config)
    assert not missing, f"{serve_config} names {missing}, missing from the checkout"


def _rayservice(where: str) -> dict:
    return next(d for d in kustomize.render(REPO_ROOT / where) if d["kind"] == "RayService")


@pytest.mark.parametrize("where", ["kuberay/base", "kuberay/overlays/dev-cpu", "kuberay/overlays/gpu-prod"])
def test_serve_replicas_fit_the_worker_pods(where):
    """Each replica's CPUs/GPUs (from the app's ServeConfig) fit one worker pod, and the worker
    groups can hold the most replicas the app may scale to."""
    from reasonguard.config import load_config
    from reasonguard.config.serve import ServeConfig

    service = _rayservice(where)
    serve = yaml.safe_load(service["spec"]["serveConfigV2"])
    groups = service["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    for app in serve["applications"]:
        args = app.get("args") or {}
        assert (REPO_ROOT / args.get("config", "")).is_file(), f"{args.get('config')} (the app's ServeConfig) is missing"
        cfg = load_config(REPO_ROOT / args["config"], ServeConfig, dict(args.get("overrides") or {}))
        cpus, gpus = cfg.replica.num_cpus, cfg.replica.num_gpus
        max_replicas = cfg.replica.num_replicas or cfg.autoscaling.max_replicas
        room = 0
        for g in groups:
            limits = g["template"]["spec"]["containers"][0]["resources"]["limits"]
            pod_cpus, pod_gpus = float(limits["cpu"]), int(limits.get("nvidia.com/gpu", 0))
            per_pod = min(pod_cpus // cpus if cpus else 10**6, pod_gpus // gpus if gpus else 10**6)
            room += int(per_pod) * g["maxReplicas"]
        assert room >= max_replicas, f"{where}: up to {max_replicas} replicas of {cpus} CPU/{gpus} GPU, room for {room}"
