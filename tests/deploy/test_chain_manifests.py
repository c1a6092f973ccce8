"""The KubeRay manifests run the paper's chain (cluster/chains/*.yaml): one RayJob per stage with the
chain's own command, clusters big enough for each stage's GPUs, and the guard's worker group scaled
by the Ray autoscaler exactly as far as Serve's autoscaling config asks. Pure: kubectl kustomize + yaml."""

from __future__ import annotations

import functools
import math
import re
from pathlib import Path

import pytest
import yaml

from reasonguard.config import load_config
from reasonguard.config.chain import load_chain, load_stage_configs, submit_command
from reasonguard.config.serve import ServeConfig
from reasonguard.deploy import kuberay, kustomize

REPO_ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = {"kuberay/base": "gpu", "kuberay/overlays/gpu-prod": "gpu", "kuberay/overlays/dev-cpu": "local"}
SERVE_FILES = {"gpu": "cluster/serve/guard_serve.yaml", "local": "cluster/serve/guard_serve_local.yaml"}


@functools.lru_cache(maxsize=None)
def rendered(where: str) -> list[dict]:
    return kustomize.render(REPO_ROOT / where)


@functools.lru_cache(maxsize=None)
def chain(name: str):
    loaded = load_chain(REPO_ROOT / f"cluster/chains/{name}.yaml")
    return loaded, load_stage_configs(loaded, REPO_ROOT)


def job_name(config: str) -> str:
    """reasonguard-<config stem without its scale>, dashed: evaluate_refined_gpu.yaml -> reasonguard-evaluate-refined."""
    return "reasonguard-" + re.sub(r"_(gpu|local)$", "", Path(config).stem).replace("_", "-")


def _rayjobs(where: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in rendered(where) if d["kind"] == "RayJob"}


# ------------------------------------------------------------------------------ RayJobs = the chain


@pytest.mark.parametrize("where", OVERLAYS)
def test_one_rayjob_per_stage_running_the_chains_command(where):
    stages, _ = chain(OVERLAYS[where])
    expected = {job_name(s.config): submit_command(s, prefix="").strip() for s in stages.stages if s.stage != "serve"}
    actual = {name: doc["spec"]["entrypoint"] for name, doc in _rayjobs(where).items()}
    assert actual == expected


def test_base_lists_the_rayjobs_in_chain_order():
    stages, _ = chain("gpu")
    resources = yaml.safe_load((REPO_ROOT / "kuberay/base/kustomization.yaml").read_text())["resources"]
    jobs = [r.removeprefix("rayjob-").removesuffix(".yaml") for r in resources if r.startswith("rayjob-")]
    assert ["reasonguard-" + j for j in jobs] == [job_name(s.config) for s in stages.stages if s.stage != "serve"]


@pytest.mark.parametrize("where", OVERLAYS)
def test_the_rayservice_serves_the_chains_serve_config(where):
    stages, _ = chain(OVERLAYS[where])
    serve_stage = next(s for s in stages.stages if s.stage == "serve")
    service = next(d for d in rendered(where) if d["kind"] == "RayService")
    apps = yaml.safe_load(service["spec"]["serveConfigV2"])["applications"]
    assert [a["args"]["config"] for a in apps] == [serve_stage.config]


# ------------------------------------------------------------------------------ room for each stage


def _gpu_phases(stage: str, cfg) -> list[tuple[float, float, int, str]]:
    """(GPUs per unit, CPUs per unit, units, what) for each GPU phase a stage runs (one phase at a time)."""
    def pipeline(p, what):
        return [(p.gpus_per_replica, 0, p.concurrency, what)] if p.gpus_per_replica else []

    def train(t, what="training"):
        return [(1, t.scaling.cpus_per_worker, t.scaling.num_workers, what)] if t.scaling.use_gpu else []

    if stage in ("distill", "shorten"):
        return pipeline(cfg.pipeline, "engines") if cfg.engine is not None else []
    if stage == "predict":
        return pipeline(cfg.pipeline, "guard engines")
    if stage == "evaluate":
        return [p for g in cfg.guards for p in pipeline(cfg.predict_config(g).pipeline, f"guard {g.name}")]
    if stage == "train":
        return train(cfg)
    if stage == "mine":
        return pipeline(cfg.pipeline, "mining") + (train(cfg.train_config("difficult.parquet"), "continual SFT") if cfg.train else [])
    if stage == "experiment":
        phases = [p for v in cfg.sweep() for p in train(cfg.train_config(cfg.variant_name(v), v), f"variant {v}")]
        guards = [{"name": "g", "engine": {**cfg.guard_engine, "model": "m"}}]
        phases += _gpu_phases("evaluate", cfg.evaluate_config(guards))
        if cfg.mine:
            phases += pipeline(cfg.mine_config("m", "out").pipeline, "mining")
        return phases
    return []


def _room(group: dict, gpus: float, cpus: float) -> tuple[int, int]:
    """(units one pod holds, pods at most) of a worker group."""
    limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
    pod_gpus, pod_cpus = int(limits.get("nvidia.com/gpu", 0)), float(limits["cpu"])
    per_pod = min(pod_gpus // gpus if gpus else 10**6, pod_cpus // cpus if cpus else 10**6)
    return int(per_pod), group["maxReplicas"]


@pytest.mark.parametrize("where", OVERLAYS)
def test_each_rayjob_cluster_holds_its_stages_gpu_work(where):
    stages, configs = chain(OVERLAYS[where])
    jobs = _rayjobs(where)
    for entry, cfg in zip(stages.stages, configs):
        if entry.stage == "serve":
            continue
        groups = kuberay.cluster_spec(jobs[job_name(entry.config)])["workerGroupSpecs"]
        for gpus, cpus, units, what in _gpu_phases(entry.stage, cfg):
            fits = [(per_pod, pods) for per_pod, pods in (_room(g, gpus, cpus) for g in groups) if per_pod >= 1]
            assert fits, f"{where} {job_name(entry.config)}: no pod holds one unit of {what} ({gpus} GPU, {cpus} CPU)"
            assert sum(per_pod * pods for per_pod, pods in fits) >= units, \
                f"{where} {job_name(entry.config)}: {units} units of {what}, room for {sum(p * n for p, n in fits)}"


def test_tensor_parallel_teachers_get_their_gpus_in_one_pod():
    """vLLM's tensor parallelism stays inside a node: a TP-4 teacher needs 4-GPU pods, not four 1-GPU pods."""
    stages, configs = chain("gpu")
    jobs = _rayjobs("kuberay/base")
    for entry, cfg in zip(stages.stages, configs):
        if entry.stage in ("distill", "shorten") and cfg.engine is not None and cfg.engine.kind == "vllm":
            group = kuberay.cluster_spec(jobs[job_name(entry.config)])["workerGroupSpecs"][1]
            pod_gpus = int(group["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"])
            assert pod_gpus == cfg.engine.tensor_parallel_size == cfg.pipeline.gpus_per_replica, entry.config
            assert group["maxReplicas"] >= cfg.pipeline.concurrency


# ------------------------------------------------------------------------------ autoscaler = Serve's autoscaling


def _serve_config(serve_file: str) -> ServeConfig:
    app = yaml.safe_load((REPO_ROOT / serve_file).read_text())["applications"][0]
    args = app.get("args") or {}
    return load_config(REPO_ROOT / args["config"], ServeConfig, dict(args.get("overrides") or {}))


def _replica_bounds(cfg: ServeConfig) -> tuple[int, int]:
    if cfg.replica.num_replicas:
        return cfg.replica.num_replicas, cfg.replica.num_replicas
    return cfg.autoscaling.min_replicas, cfg.autoscaling.max_replicas


def _replica_group(groups: list[dict], cfg: ServeConfig) -> tuple[dict, int]:
    """The worker group that holds the guard's replicas (GPU replicas: the GPU group) and replicas per pod."""
    holding = [(g, _room(g, cfg.replica.num_gpus, cfg.replica.num_cpus)[0]) for g in groups]
    holding = [(g, n) for g, n in holding if n >= 1]
    assert len(holding) == 1, [g["groupName"] for g, _ in holding]
    return holding[0]


@pytest.mark.parametrize("where", OVERLAYS)
def test_rayservice_worker_group_scales_exactly_as_serve_autoscales(where):
    service = next(d for d in rendered(where) if d["kind"] == "RayService")
    cluster = kuberay.cluster_spec(service)
    assert cluster["enableInTreeAutoscaling"] is True and cluster["autoscalerOptions"]["upscalingMode"] == "Default"
    serve = yaml.safe_load(service["spec"]["serveConfigV2"])
    cfg = load_config(REPO_ROOT / serve["applications"][0]["args"]["config"], ServeConfig)
    group, per_pod = _replica_group(cluster["workerGroupSpecs"], cfg)
    low, high = _replica_bounds(cfg)
    # Pods for Serve's fewest and most replicas: no fewer (replicas would wait), no more (idle GPUs).
    assert (group["minReplicas"], group["maxReplicas"]) == (math.ceil(low / per_pod), math.ceil(high / per_pod)), where
    assert group["minReplicas"] <= group.get("replicas", group["minReplicas"]) <= group["maxReplicas"]
    if cfg.replica.num_gpus:
        assert group["rayStartParams"]["num-gpus"] == str(int(cfg.replica.num_gpus * per_pod))
    # The Ray autoscaler lets an idle pod go no later than Serve lets its replica go.
    assert cluster["autoscalerOptions"]["idleTimeoutSeconds"] <= cfg.autoscaling.downscale_delay_s


@pytest.mark.parametrize("where", OVERLAYS)
def test_interactive_raycluster_can_hold_the_guard_at_its_most_replicas(where):
    """`serve deploy cluster/serve/guard_serve*.yaml` on the RayCluster: its autoscaled groups reach max_replicas."""
    cluster = next(d for d in rendered(where) if d["kind"] == "RayCluster")
    spec = kuberay.cluster_spec(cluster)
    assert spec["enableInTreeAutoscaling"] is True
    cfg = _serve_config(SERVE_FILES[OVERLAYS[where]])
    group, per_pod = _replica_group(spec["workerGroupSpecs"], cfg)
    assert per_pod * group["maxReplicas"] >= _replica_bounds(cfg)[1], where


def test_autoscaler_check_fails_on_a_mismatch():
    service = next(d for d in rendered("kuberay/base") if d["kind"] == "RayService")
    cfg = load_config(REPO_ROOT / "cluster/configs/serve_gpu.yaml", ServeConfig, {"autoscaling.max_replicas": 12})
    group, per_pod = _replica_group(kuberay.cluster_spec(service)["workerGroupSpecs"], cfg)
    assert group["maxReplicas"] != math.ceil(_replica_bounds(cfg)[1] / per_pod)


# ------------------------------------------------------------------------------ the documented sequence


def _code_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, re.S)


@pytest.mark.parametrize("name", ["gpu", "local"])
def test_docs_give_the_chains_commands_in_order(name):
    """docs/paper-chain.md holds each chain's ray job submit commands, exactly and in order."""
    from reasonguard.config.chain import submit_commands

    stages, _ = chain(name)
    blocks = _code_blocks((REPO_ROOT / "docs/paper-chain.md").read_text(encoding="utf-8"))
    documented = [[line for line in b.splitlines() if line.startswith("ray job submit")] for b in blocks]
    assert submit_commands(stages) in documented


def test_docs_apply_the_rayjobs_in_chain_order():
    stages, _ = chain("gpu")
    text = (REPO_ROOT / "docs/paper-chain.md").read_text(encoding="utf-8")
    loop = re.search(r"for job in (.*?); do", text, re.S)[1].replace("\\\n", " ").split()
    assert ["reasonguard-" + j for j in loop] == [job_name(s.config) for s in stages.stages if s.stage != "serve"]
