"""The laptop-to-cluster commands in README.md, docs/kuberay.md, the manifests' comments and the
scripts name stages, modules and configs that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from reasonguard.deploy.submit import stage_modules

REPO_ROOT = Path(__file__).resolve().parents[2]
SOURCES = ["README.md", "docs/kuberay.md", *sorted(p.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / "kuberay").rglob("*.yaml")),
           *sorted(p.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / "cluster" / "scripts").glob("*.sh"))]
COMMAND = re.compile(r"python -m (jobs\.\w+) [^\n]*?--config (cluster/configs/[\w.-]+\.yaml)")
SUBMIT = re.compile(r"reasonguard submit (\w[\w-]*) [^\n]*?--config (cluster/configs/[\w.-]+\.yaml)")


def _references() -> list[tuple[str, str, str]]:
    refs = set()
    for rel in SOURCES:
        text = (REPO_ROOT / rel).read_text(encoding="utf-8")
        for module, config in COMMAND.findall(text):
            refs.add((rel, module, config))
        for stage, config in SUBMIT.findall(text):
            refs.add((rel, stage_modules()[stage], config))
    return sorted(refs)


REFERENCES = _references()


def test_readme_has_a_ray_job_submit_command_for_every_stage():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## From laptop to cluster", 1)[1]
    for module in sorted(set(stage_modules().values())):
        stage = module.removeprefix("jobs.")
        assert re.search(rf"ray job submit \$RT -- python -m {re.escape(module)} +--config cluster/configs/{stage}(_\w+)?_local\.yaml", section), stage


@pytest.mark.parametrize(("source", "module", "config"), REFERENCES, ids=[f"{s}:{m}:{c.rsplit('/', 1)[1]}" for s, m, c in REFERENCES])
def test_documented_command_names_existing_module_and_config(source, module, config):
    module_file = REPO_ROOT.joinpath(*module.split(".")).with_suffix(".py")
    assert module in set(stage_modules().values()), f"{source}: {module} is not a stage of reasonguard.cli"
    missing = [p.relative_to(REPO_ROOT).as_posix() for p in (module_file, REPO_ROOT / config) if not p.exists()]
    assert not missing, f"{source}: {missing} do not exist"
