import subprocess
import sys

import pytest

from reasonguard.cli import STAGES, build_parser, main


def test_help_lists_every_stage(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for stage in [*STAGES, "models", "datasets"]:
        assert f"  {stage}" in text


def test_every_stage_names_a_module_file(repo_root):
    for stage, (module, _) in STAGES.items():
        path = repo_root / (module.replace(".", "/") + ".py")
        assert path.exists(), f"{module} is missing"
        assert "def main(" in path.read_text(), module


def test_unknown_command_is_rejected():
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["frobnicate"])
    assert exc.value.code == 2


def test_datasets_list_and_suite(capsys):
    assert main(["datasets", "list", "--kind", "embedded"]) == 0
    assert capsys.readouterr().out.startswith("demo")
    assert main(["datasets", "suite"]) == 0
    out = capsys.readouterr().out
    assert "xstest_response_refusal" in out and "refusal" in out


def test_models_path_passes_hub_ids_through(capsys):
    assert main(["models", "path", "nvidia/Nemotron-Content-Safety-Reasoning-4B"]) == 0
    assert capsys.readouterr().out.strip() == "nvidia/Nemotron-Content-Safety-Reasoning-4B"


def test_stage_dry_run_validates_and_prints(repo_root, capsys):
    assert main(["predict", "--config", str(repo_root / "cluster/configs/predict_local.yaml"), "--set", "n_samples=3", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "n_samples: 3" in out and "kind: vllm" in out


def test_bad_config_field_exits_2_naming_the_field(repo_root, capsys):
    code = main(["predict", "--config", str(repo_root / "cluster/configs/predict_local.yaml"), "--set", "n_samples=0", "--dry-run"])
    assert code == 2
    assert "n_samples" in capsys.readouterr().err


def test_console_script_runs_without_heavy_imports(repo_root):
    code = "import sys; from reasonguard.cli import main; main(['datasets','list','--kind','embedded']); " \
           "print(sorted(m for m in ('ray','vllm','deepspeed','torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=repo_root, check=True).stdout
    assert out.strip().endswith("[]")
