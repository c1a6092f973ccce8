"""The built-in kustomize subset (reasonguard/deploy/kustomize.py): patch semantics, images, and
agreement with `kubectl kustomize` on every kuberay/ directory when kubectl is installed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from reasonguard.deploy import kustomize
from reasonguard.deploy.kuberay import kustomize_dirs

REPO_ROOT = Path(__file__).resolve().parents[2]


def _write(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")


def test_strategic_merge_merges_maps_replaces_lists_and_deletes_on_null():
    base = {"spec": {"a": 1, "b": {"c": 2, "d": 3}, "items": [1, 2, 3]}}
    patch = {"spec": {"b": {"c": 20, "d": None}, "items": [9], "new": "x"}}
    out = kustomize.strategic_merge(base, patch)
    assert out == {"spec": {"a": 1, "b": {"c": 20}, "items": [9], "new": "x"}}
    assert base["spec"]["b"] == {"c": 2, "d": 3}  # input untouched


def test_strategic_merge_rejects_directives():
    with pytest.raises(kustomize.KustomizeError, match=r"\$patch"):
        kustomize.strategic_merge({"a": {}}, {"a": {"$patch": "delete"}})


def test_json6902_ops():
    doc = {"spec": {"groups": [{"name": "cpu"}, {"name": "gpu", "n": 1}], "x": 1}}
    ops = [
        {"op": "test", "path": "/spec/groups/1/name", "value": "gpu"},
        {"op": "replace", "path": "/spec/groups/1/n", "value": 4},
        {"op": "add", "path": "/spec/groups/-", "value": {"name": "tpu"}},
        {"op": "remove", "path": "/spec/groups/0"},
        {"op": "copy", "from": "/spec/x", "path": "/spec/y"},
        {"op": "move", "from": "/spec/x", "path": "/spec/z"},
        {"op": "add", "path": "/spec/a~1b", "value": True},
    ]
    out = kustomize.json6902(doc, ops)
    assert out == {"spec": {"groups": [{"name": "gpu", "n": 4}, {"name": "tpu"}], "y": 1, "z": 1, "a/b": True}}
    assert doc["spec"]["groups"][1]["n"] == 1


def test_json6902_failed_test_and_missing_path_raise():
    doc = {"spec": {"groups": [{"name": "cpu"}]}}
    with pytest.raises(kustomize.KustomizeError, match="test failed"):
        kustomize.json6902(doc, [{"op": "test", "path": "/spec/groups/0/name", "value": "gpu"}])
    with pytest.raises(kustomize.KustomizeError, match="path not found"):
        kustomize.json6902(doc, [{"op": "replace", "path": "/spec/nothing/here", "value": 1}])
    with pytest.raises(kustomize.KustomizeError, match="path not found"):
        kustomize.json6902(doc, [{"op": "remove", "path": "/spec/groups/3"}])


@pytest.mark.parametrize(
    ("ref", "image", "expected"),
    [
        ("reasonguard:0.1.0", {"name": "reasonguard", "newTag": "2"}, "reasonguard:2"),
        ("reasonguard:0.1.0", {"name": "reasonguard", "newName": "reg.io/x/rg"}, "reg.io/x/rg:0.1.0"),
        ("reasonguard", {"name": "reasonguard", "digest": "sha256:ab"}, "reasonguard@sha256:ab"),
        ("other:1", {"name": "reasonguard", "newTag": "2"}, "other:1"),
        ("localhost:5000/reasonguard:1", {"name": "localhost:5000/reasonguard", "newTag": "2"}, "localhost:5000/reasonguard:2"),
    ],
)
def test_images_transformer(ref, image, expected):
    doc = {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": ref}]}}}}
    kustomize.set_image(doc, image)
    assert doc["spec"]["template"]["spec"]["containers"][0]["image"] == expected


def test_render_overlay_with_all_patch_kinds(tmp_path):
    _write(tmp_path / "base/kustomization.yaml", {"resources": ["cm.yaml"]})
    _write(
        tmp_path / "base/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {x: '1'}\n---\n"
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: 'rg:1'}]}\n",
    )
    _write(
        tmp_path / "over/kustomization.yaml",
        {
            "resources": ["../base"],
            "images": [{"name": "rg", "newTag": "2"}],
            "patches": [
                {"path": "smp.yaml"},
                {"target": {"kind": "Pod", "name": "p"}, "patch": "- {op: add, path: /spec/nodeName, value: n1}"},
            ],
        },
    )
    _write(tmp_path / "over/smp.yaml", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"y": "2"}})
    docs = {d["kind"]: d for d in kustomize.render(tmp_path / "over")}
    assert docs["ConfigMap"]["data"] == {"x": "1", "y": "2"}
    assert docs["Pod"]["spec"]["nodeName"] == "n1"
    assert docs["Pod"]["spec"]["containers"][0]["image"] == "rg:2"


def test_render_refuses_unknown_keys_and_unmatched_patches(tmp_path):
    _write(tmp_path / "a/kustomization.yaml", {"resources": [], "namePrefix": "x-"})
    with pytest.raises(kustomize.KustomizeError, match="namePrefix"):
        kustomize.render(tmp_path / "a")
    _write(tmp_path / "b/cm.yaml", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}})
    _write(tmp_path / "b/kustomization.yaml", {"resources": ["cm.yaml"], "patches": [{"target": {"kind": "Pod"}, "patch": "[]"}]})
    with pytest.raises(kustomize.KustomizeError, match="selects no resource"):
        kustomize.render(tmp_path / "b")


def test_every_kuberay_directory_renders():
    dirs = kustomize_dirs(REPO_ROOT)
    names = {d.relative_to(REPO_ROOT).as_posix() for d in dirs}
    assert {"kuberay/base", "kuberay/overlays/dev-cpu", "kuberay/overlays/gpu-prod"} <= names
    for directory in dirs:
        kinds = sorted(d["kind"] for d in kustomize.render(directory))
        assert kinds == ["PersistentVolumeClaim", "RayCluster", "RayJob", "RayJob", "RayJob", "RayService"], directory


def _kubectl_kustomize(directory: Path) -> list[dict] | None:
    if shutil.which("kubectl"):
        cmd = ["kubectl", "kustomize", str(directory)]
    elif shutil.which("kustomize"):
        cmd = ["kustomize", "build", str(directory)]
    else:
        return None
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.mark.parametrize("directory", ["base", "overlays/dev-cpu", "overlays/gpu-prod"])
def test_matches_real_kustomize(directory):
    path = REPO_ROOT / "kuberay" / directory
    theirs = _kubectl_kustomize(path)
    if theirs is None:
        pytest.skip("neither kubectl nor kustomize is installed: the built-in renderer is not cross-checked")
    key = lambda d: (d["kind"], d["metadata"]["name"])  # noqa: E731
    ours = {key(d): d for d in kustomize.render(path)}
    assert ours == {key(d): d for d in theirs}
