"""kuberay/ is rendered by the real kustomize (`kubectl kustomize`): every directory renders the
expected resources, and errors name the directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from reasonguard.deploy import kustomize
from reasonguard.deploy.kuberay import kustomize_dirs

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_every_kuberay_directory_renders_through_kubectl():
    dirs = kustomize_dirs(REPO_ROOT)
    names = {d.relative_to(REPO_ROOT).as_posix() for d in dirs}
    assert {"kuberay/base", "kuberay/overlays/dev-cpu", "kuberay/overlays/gpu-prod"} <= names
    assert kustomize.kustomize_command(REPO_ROOT / "kuberay/base")[:2] in (["kubectl", "kustomize"], ["kustomize", "build"])
    for directory in dirs:
        kinds = sorted(d["kind"] for d in kustomize.render(directory))
        # one RayJob per stage of the paper's chain but serving (cluster/chains/gpu.yaml: 16 stages)
        assert kinds == ["PersistentVolumeClaim", "RayCluster", *["RayJob"] * 15, "RayService"], directory


def test_overlays_change_what_they_say(tmp_path):
    base = {(d["kind"], d["metadata"]["name"]): d for d in kustomize.render(REPO_ROOT / "kuberay/base")}
    gpu = {(d["kind"], d["metadata"]["name"]): d for d in kustomize.render(REPO_ROOT / "kuberay/overlays/gpu-prod")}
    assert base.keys() == gpu.keys()
    assert base != gpu  # the overlay patches something (images, resources, replicas)


def test_errors_name_the_directory(tmp_path):
    with pytest.raises(kustomize.KustomizeError, match="no kustomization file"):
        kustomize.render(tmp_path)
    (tmp_path / "kustomization.yaml").write_text("resources: [missing.yaml]\n")
    with pytest.raises(kustomize.KustomizeError, match=str(tmp_path)):
        kustomize.render(tmp_path)


def test_split_image():
    assert kustomize.split_image("rayproject/ray:2.60.0-py311") == ("rayproject/ray", "2.60.0-py311", None)
    assert kustomize.split_image("reg:5000/a/b@sha256:x") == ("reg:5000/a/b", None, "sha256:x")
