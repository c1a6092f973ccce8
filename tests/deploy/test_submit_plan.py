"""`reasonguard submit` decisions (reasonguard/deploy/submit.py) and its usage errors, without Ray."""

from __future__ import annotations

import shlex
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from jobs import submit as submit_cli
from reasonguard.cli import STAGES
from reasonguard.deploy import submit as plan

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_every_cli_stage_maps_to_its_job_module():
    modules = plan.stage_modules()
    for name, (module, _) in STAGES.items():
        if name != "submit":
            assert modules[name] == module
    assert modules["sft_data"] == modules["sft-data"] == "jobs.sft_data"
    assert "submit" not in modules
    with pytest.raises(ValueError, match="unknown stage 'trian'.*train"):
        plan.stage_module("trian")


def test_entrypoint_is_one_quoted_command():
    ep = plan.build_entrypoint("predict", "cluster/configs/predict_local.yaml", ["data.0.limit=4", "engine={kind: transformers, model: tiny}", "note=a;rm -rf /"])
    assert ep.startswith("python -m jobs.predict --config cluster/configs/predict_local.yaml --set data.0.limit=4 ")
    assert shlex.split(ep) == [
        "python", "-m", "jobs.predict", "--config", "cluster/configs/predict_local.yaml",
        "--set", "data.0.limit=4", "--set", "engine={kind: transformers, model: tiny}", "--set", "note=a;rm -rf /",
    ]
    with pytest.raises(ValueError, match="key=value"):
        plan.build_entrypoint("predict", "c.yaml", ["no_equals_sign"])
    with pytest.raises(ValueError, match="key=value"):
        plan.build_entrypoint("predict", "c.yaml", ["=value"])


def test_config_path_is_made_relative_to_the_uploaded_working_dir(tmp_path):
    (tmp_path / "repo/cluster/configs").mkdir(parents=True)
    (tmp_path / "repo/cluster/configs/x.yaml").write_text("a: 1\n")
    (tmp_path / "elsewhere.yaml").write_text("a: 1\n")
    repo = tmp_path / "repo"
    assert plan.job_config_path("cluster/configs/x.yaml", ".", cwd=repo) == "cluster/configs/x.yaml"
    assert plan.job_config_path(str(repo / "cluster/configs/x.yaml"), str(repo), cwd=tmp_path) == "cluster/configs/x.yaml"
    with pytest.raises(ValueError, match="outside the working directory"):
        plan.job_config_path("../elsewhere.yaml", ".", cwd=repo)
    with pytest.raises(ValueError, match="does not exist"):
        plan.job_config_path("cluster/configs/missing.yaml", ".", cwd=repo)
    # Code already on the cluster (image, zip): the path is the cluster's business.
    assert plan.job_config_path("cluster/configs/gpu.yaml", "local:///home/ray/reasonguard", cwd=repo) == "cluster/configs/gpu.yaml"


def test_runtime_env_from_the_repository_file():
    env = plan.load_runtime_env(REPO_ROOT / plan.DEFAULT_RUNTIME_ENV, cwd=REPO_ROOT)
    assert env["working_dir"] == str(REPO_ROOT)
    for pattern in ("/.venv", "/.git", "/outputs", "/checkpoints", "__pycache__"):
        assert pattern in env["excludes"]
    assert len(env["excludes"]) == len(set(env["excludes"]))
    assert env["env_vars"]["TOKENIZERS_PARALLELISM"] == "false"


def test_runtime_env_overrides_and_default_excludes(tmp_path):
    (tmp_path / "env.yaml").write_text(yaml.safe_dump({"working_dir": ".", "env_vars": {"A": "1"}}))
    env = plan.load_runtime_env(tmp_path / "env.yaml", cwd=tmp_path)
    assert env["excludes"] == list(plan.DEFAULT_EXCLUDES)  # a custom file cannot upload .venv by accident
    uri = plan.load_runtime_env(tmp_path / "env.yaml", working_dir="local:///home/ray/reasonguard", cwd=tmp_path)
    assert uri == {"working_dir": "local:///home/ray/reasonguard", "env_vars": {"A": "1"}}
    assert "working_dir" not in plan.load_runtime_env(tmp_path / "env.yaml", working_dir="", cwd=tmp_path)
    assert plan.load_runtime_env(None, cwd=tmp_path)["working_dir"] == str(tmp_path)
    with pytest.raises(ValueError, match="not a directory"):
        plan.load_runtime_env(None, working_dir="nope", cwd=tmp_path)
    with pytest.raises(ValueError, match="run from the repository root"):
        plan.load_runtime_env("cluster/runtime_env.yaml", cwd=tmp_path)
    (tmp_path / "bad.yaml").write_text("- a\n- b\n")
    with pytest.raises(ValueError, match="must be a mapping"):
        plan.load_runtime_env(tmp_path / "bad.yaml", cwd=tmp_path)


def _excluded(patterns, rel: str) -> bool:
    """Ray's own rule (runtime_env packaging): gitwildmatch on each path it walks, parents first."""
    from ray._private.thirdparty.pathspec import PathSpec  # the copy Ray itself uses (imports ray, starts nothing)

    spec = PathSpec.from_lines("gitwildmatch", patterns)
    parts = rel.split("/")
    return any(spec.match_file("/".join(parts[: i + 1])) for i in range(len(parts)))


def test_runtime_env_uploads_the_code_and_nothing_heavy():
    import subprocess

    env = plan.load_runtime_env(REPO_ROOT / plan.DEFAULT_RUNTIME_ENV, cwd=REPO_ROOT)
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO_ROOT,
                            capture_output=True, text=True, check=True).stdout.split()
    code = [f for f in listed if f.endswith((".py", ".yaml", ".jsonl", ".json", ".md", ".toml")) and (REPO_ROOT / f).exists()]
    assert "reasonguard/data/demo/demo.jsonl" in code
    dropped = [f for f in code if _excluded(env["excludes"], f)]
    assert not dropped, f"the job would miss {dropped}"
    for heavy in (".venv/lib/python3.11/site-packages/torch/__init__.py", ".git/HEAD", "outputs/predict/predictions.parquet",
                  "checkpoints/run/model.safetensors", "jobs/__pycache__/predict.cpython-311.pyc", "models/tiny/weights.bin"):
        assert _excluded(env["excludes"], heavy), heavy


def test_status_to_exit_code():
    assert [plan.exit_code(s) for s in ("SUCCEEDED", "FAILED", "STOPPED")] == [0, 1, 3]
    assert plan.is_terminal("FAILED") and not plan.is_terminal("RUNNING") and not plan.is_terminal("PENDING")
    with pytest.raises(ValueError, match="not final"):
        plan.exit_code("RUNNING")


def test_submission_id_names_stage_and_time():
    sid = plan.submission_id("sft_data", datetime(2026, 11, 22, 10, 15, 0, tzinfo=timezone.utc), "a1b2c3")
    assert sid == "reasonguard-sft-data-20261122-101500-a1b2c3"
    assert plan.submission_id("train") != plan.submission_id("train")


def test_client_errors_are_explained():
    auth = plan.explain_client_error(RuntimeError("Request failed with status code 401: Missing authentication token"), "http://h:8265")
    assert "RAY_AUTH_MODE=token" in auth
    down = plan.explain_client_error(ConnectionError("Failed to connect to Ray at address: http://h:8265."), "http://h:8265")
    assert "start_local_head.sh" in down
    assert plan.explain_client_error(RuntimeError("boom"), "x") == "RuntimeError: boom"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "a stage and --config are required"),
        (["predict"], "a stage and --config are required"),
        (["predcit", "--config", "cluster/configs/predict_local.yaml"], "unknown stage"),
        (["predict", "--config", "x.yaml", "--set", "oops"], "key=value"),
        (["predict", "--stop", "reasonguard-predict-1"], "do not name a stage"),
    ],
)
def test_usage_errors_exit_2_before_contacting_a_cluster(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        submit_cli.main(argv + ["--address", "http://127.0.0.1:9"])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_deploy_modules_and_submit_cli_import_without_ray():
    import subprocess
    import sys

    heavy = ["ray", "vllm", "deepspeed", "torch", "transformers"]
    code = (
        "import sys, reasonguard.deploy.kuberay, reasonguard.deploy.kustomize, reasonguard.deploy.submit, jobs.submit\n"
        "reasonguard.deploy.submit.stage_modules()\n"
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", f"heavy modules imported: {out}"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["predict", "--config", "cluster/configs/no_such_stage_config.yaml"], "does not exist"),
        (["predict", "--config", "{tmp}/x.yaml"], "outside the working directory"),
        (["predict", "--config", "cluster/configs/predict_local.yaml", "--runtime-env", "nope.yaml"], "runtime env file"),
    ],
)
def test_bad_paths_exit_2_before_contacting_a_cluster(argv, message, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(REPO_ROOT)
    (tmp_path / "x.yaml").write_text("a: 1\n")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert submit_cli.main(argv + ["--address", "http://127.0.0.1:9"]) == 2  # 1 would mean it tried the address
    err = capsys.readouterr().err
    assert message in err and "Failed to connect" not in err
