"""Multi-node training on one machine: a Ray head with no CPUs and two worker nodes (each its own raylet
with its own resources and node folder, started by cluster/scripts), `ray job submit` of jobs.train
(the tiny model, 2 Ray Train workers, DeepSpeed ZeRO-2 over gloo, a checkpoint every few steps) with
checkpoints and outputs in a folder every node reaches. The worker node of rank 0 is killed (SIGKILL of
all its processes, `stop_local.sh --node worker-N --kill`) after the first registered checkpoint; a replacement node
joins, and the job must finish from the last checkpoint: steps 1..N once each in the result, the
steps run twice (after the last checkpoint, before the kill) counted from the workers' own logs.
A second test submits jobs.distill (transformers on the tiny model, 2 engine replicas), checks that Ray
Data placed its engine actors on two different nodes, kills one of those nodes mid-run and checks that
every item ends in the outputs once, counting the rows redone from the engine actors' logs.

Heavy for a 2-core machine (three raylets, two DeepSpeed workers, a restart): it runs only with
REASONGUARD_MULTINODE=1. docs/kuberay.md ("Multi-node check on one machine") has the measured numbers.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from benchmarks.local_cluster import node_names, state, worker_resources

from .test_local_cluster import REPO_ROOT, SCRIPTS, VENV_BIN, _run, dashboard_address, start_head, stop_cluster

pytestmark = [
    pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(900),
    pytest.mark.skipif(os.environ.get("REASONGUARD_MULTINODE") != "1",
                       reason="three raylets and a DeepSpeed restart: set REASONGUARD_MULTINODE=1 to run"),
]

POLICY = "S1: Violence.\nS2: Criminal planning.\nS3: Weapons.\nS4: Self-harm."
REASONS = {"harmful": "The request could hurt people.", "unharmful": "The request is ordinary and safe."}
CONFIG = "cluster/configs/train_multinode_local.yaml"
EVERY = 3  # its checkpoint interval (optimizer steps)
MAX_STEPS = 15
# The training loop's own lines on rank 0 (reasonguard.train.loop, logging_steps 1): "step 7/24 epoch 0 loss 8.71 ..."
# and, on every rank of a restarted worker group, "rank 0 resumed from checkpoint_step_0000003 at step 3".
STEP_LINE = re.compile(r"\bstep (\d+)/\d+ epoch \d+ loss")
RESUMED_LINE = re.compile(r"\brank \d+ resumed from \S+ at step (\d+)")


def _nodes(cluster) -> dict[str, str]:
    return node_names(cluster.address, alive_only=True)


def _train_workers(cluster) -> list[dict]:
    actors = state(cluster.address, "actors")
    return [a for a in actors if a.get("class_name") == "RayTrainWorker" and a["state"] == "ALIVE"]


def _worker_placement(cluster) -> list[str]:
    names = _nodes(cluster)
    return sorted(names.get(a["node_id"], "?") for a in _train_workers(cluster))


def _worker_logs(temp_root: str) -> dict[str, list[str]]:
    """Each worker process's stdout and stderr files, read from every node's log folder, the killed node's too."""
    found: dict[str, list[str]] = {}
    for path in sorted(Path(temp_root).glob("*/session_*/logs/worker-*.[oe][ur][tr]")):
        found.setdefault(f"{path.parts[-4]}:{path.stem}", []).append(path.read_text(errors="replace"))
    return found


def _step_logs(temp_root: str) -> dict[str, list[int]]:
    """The steps each training process logged (only rank 0 logs them; a line may reach both of its files)."""
    found = {key: max(([int(m) for m in STEP_LINE.findall(t)] for t in texts), key=len)
             for key, texts in _worker_logs(temp_root).items()}
    return {key: steps for key, steps in found.items() if steps}


def _registered_checkpoint(run_dir: Path) -> int:
    """The step of the latest checkpoint Ray Train's controller has registered (0: none). A checkpoint folder
    in storage is not enough: the controller registers it once it has polled every worker's report, and a
    worker group restarted before that starts from the previous registered checkpoint."""
    snapshot = run_dir / "checkpoint_manager_snapshot.json"
    try:
        latest = json.loads(snapshot.read_text()).get("latest_checkpoint_result")
    except (OSError, ValueError):
        return 0
    steps = [int(m) for m in re.findall(r"checkpoint_step_(\d+)", json.dumps(latest))]
    return max(steps, default=0)


def _add_worker(cluster, n: int) -> subprocess.CompletedProcess:
    env = {**cluster.env, "RAY_WORKER_RESOURCES": worker_resources(n)}
    return _run(["bash", str(SCRIPTS / "add_local_worker.sh"), str(n)], env, timeout=180)


@pytest.fixture
def cluster(tiny_model_dir):
    """A fresh head and worker-1, worker-2 per test: each test kills a node and adds others, and in a shuffled
    order the next test must not start from that cluster."""
    assert (VENV_BIN / "ray").exists() or shutil.which("ray"), "no `ray` CLI (.venv/bin/ray or on PATH)"
    temp_root = tempfile.mkdtemp(prefix="rgm", dir="/tmp")  # short: AF_UNIX paths stay below 107 bytes
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "RAY_TEMP_ROOT": temp_root,
        "RAY_NUM_CPUS": "0",  # the head runs the driver and Train's controller (0 CPUs each), no workers
        "RAY_WORKER_NUM_CPUS": "1", "RAY_OBJECT_STORE_MB": "200", "RAY_AUTH_MODE": "disabled",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("RAY_ADDRESS", None)
    try:
        start_head(env)
        ns = SimpleNamespace(address=dashboard_address(env), env=env, temp_root=temp_root)
        for n in (1, 2):
            joined = _add_worker(ns, n)
            assert joined.returncode == 0, joined.stdout + joined.stderr
        yield ns
    finally:
        stop_cluster(env, temp_root)


@pytest.fixture(scope="module")
def sft_path(tmp_path_factory) -> str:
    from reasonguard.config import validate_config
    from reasonguard.config.sft_data import SftDataConfig
    from reasonguard.datasets import load_demo
    from reasonguard.sft import build_from_config, write_rows

    folder = tmp_path_factory.mktemp("mn_sft")
    rows = [{**e.to_row(), "reasoning": REASONS[e.prompt_harm_label]} for e in load_demo() if e.response is None]
    traces = write_rows(rows, str(folder / "traces.parquet"))
    build = {"traces": [traces], "mode": "dual", "dual_duplicate": True, "policy": POLICY, "seed": 0}
    return write_rows(build_from_config(validate_config(SftDataConfig, build)).rows, str(folder / "sft.parquet"))


def test_two_node_training_survives_a_lost_node(cluster, sft_path, tmp_path):
    from ray.job_submission import JobStatus, JobSubmissionClient

    # The nodes: a head without CPUs and two 1-CPU workers, each its own raylet.
    assert sorted(_nodes(cluster).values()) == ["head", "worker-1", "worker-2"]
    shared = tmp_path / "shared"  # storage every node reaches (one machine: one folder)
    out, storage = shared / "out", shared / "ray"
    # The shipped drill config (tiny model, 2 workers of 1 CPU, ZeRO-2, a checkpoint every 3 steps), with
    # this test's data and shared folders.
    config = yaml.safe_load((REPO_ROOT / CONFIG).read_text())
    config.update(data={**config["data"], "sft_path": sft_path}, output_dir=str(out), storage_path=str(storage),
                  max_steps=MAX_STEPS)
    assert (config["run_name"], config["checkpoint"]["every_steps"], config["scaling"]["num_workers"]) == ("multinode", EVERY, 2)
    config_path = tmp_path / "train_multinode.yaml"
    config_path.write_text(json.dumps(config))  # JSON is YAML
    client = JobSubmissionClient(cluster.address)
    t0 = time.monotonic()
    submitted = _run([str(VENV_BIN / "ray"), "job", "submit", "--address", cluster.address, "--no-wait",
                      "--working-dir", ".", "--runtime-env", "cluster/runtime_env.yaml", "--",
                      "python", "-m", "jobs.train", "--config", str(config_path)], cluster.env, timeout=180)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    job_id = re.search(r"Job '([^']+)' submitted successfully", submitted.stdout + submitted.stderr).group(1)

    def status() -> JobStatus:
        return client.get_job_status(job_id)

    def logs_tail() -> str:
        return client.get_job_logs(job_id)[-6000:]

    # One Ray Train worker per worker node.
    placement = []
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline and status() in (JobStatus.PENDING, JobStatus.RUNNING):
        placement = _worker_placement(cluster)
        if len(placement) == 2:
            break
        time.sleep(1)
    assert placement == ["worker-1", "worker-2"], (placement, logs_tail())

    # A checkpoint registered by the controller, and a step past it on rank 0: then kill a worker node.
    run_dir, last_ckpt = storage / "multinode", 0
    while time.monotonic() < deadline and status() == JobStatus.RUNNING:
        last_ckpt = _registered_checkpoint(run_dir)
        logged = [s for steps in _step_logs(cluster.temp_root).values() for s in steps]
        if last_ckpt and max(logged, default=0) > last_ckpt:
            break
        time.sleep(0.3)
    assert last_ckpt >= EVERY, logs_tail()
    assert status() == JobStatus.RUNNING, logs_tail()
    # The node of rank 0 (the process logging the steps): it holds the rank that saves the model.
    victim = next(iter(_step_logs(cluster.temp_root))).split(":", 1)[0]
    survivor = ({"worker-1", "worker-2"} - {victim}).pop()
    t_kill = time.monotonic()
    killed = _run(["bash", str(SCRIPTS / "stop_local.sh"), "--node", victim, "--kill"], cluster.env, timeout=60)
    assert killed.returncode == 0 and ">> killed" in killed.stdout, killed.stdout + killed.stderr
    # What the controller had registered by the kill (it may have registered one more since the last look).
    last_ckpt = _registered_checkpoint(run_dir)
    steps_before = _step_logs(cluster.temp_root)
    joined = _add_worker(cluster, 3)  # the replacement node
    assert joined.returncode == 0, joined.stdout + joined.stderr
    t_joined = time.monotonic()

    # Training resumes on the surviving node and the replacement.
    resumed_placement, t_resumed = [], None
    while time.monotonic() < t_kill + 400 and status() in (JobStatus.PENDING, JobStatus.RUNNING):
        if t_resumed is None and len(_step_logs(cluster.temp_root)) > len(steps_before):
            t_resumed = time.monotonic()  # a new training process logged its first step
        if not resumed_placement:
            placement = _worker_placement(cluster)
            if len(placement) == 2 and victim not in placement:
                resumed_placement = placement
        time.sleep(0.5)
    final_status = status()
    t_done = time.monotonic()
    assert final_status == JobStatus.SUCCEEDED, logs_tail()
    assert resumed_placement in ([], sorted([survivor, "worker-3"])), resumed_placement

    # Nothing lost: every step once in the result, the final checkpoint in shared storage, the export.
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["step"] == MAX_STEPS
    assert [h["step"] for h in summary["log_history"]] == list(range(1, MAX_STEPS + 1))
    assert (storage / "multinode" / f"checkpoint_step_{MAX_STEPS:07d}" / "trainer_state.json").exists()
    assert summary["checkpoint"].endswith(f"checkpoint_step_{MAX_STEPS:07d}")
    assert (out / "final" / "config.json").exists() and list((out / "final").glob("*.safetensors"))

    # Redone work: steps a killed attempt ran after its last checkpoint, which the next attempt ran again.
    per_process = _step_logs(cluster.temp_root)
    logged = [s for steps in per_process.values() for s in steps]
    assert sorted(set(logged)) == list(range(1, MAX_STEPS + 1)), per_process
    redone = len(logged) - len(set(logged))
    resumed = sorted({int(m) for texts in _worker_logs(cluster.temp_root).values() for t in texts for m in RESUMED_LINE.findall(t)})
    report = {
        "job_id": job_id, "steps": MAX_STEPS, "checkpoint_every": EVERY, "last_checkpoint_at_kill": last_ckpt,
        "resumed_at_step": resumed, "steps_by_process": per_process, "redone_steps": redone, "processes_logging_steps": len(per_process),
        "placement_before": ["worker-1", "worker-2"], "killed_node": f"{victim} (rank 0)", "placement_after": resumed_placement or "(not caught)",
        "replacement_node_join_s": round(t_joined - t_kill, 1),
        "kill_to_first_resumed_step_s": round(t_resumed - t_kill, 1) if t_resumed else None,
        "job_total_s": round(t_done - t0, 1),
    }
    print("\nMULTINODE REPORT " + json.dumps(report))
    (Path(os.environ.get("REASONGUARD_MULTINODE_REPORT", tmp_path / "report.json"))).write_text(json.dumps(report, indent=2))
    assert resumed == [last_ckpt], per_process  # restored (every rank) from the last checkpoint before the kill
    assert 1 <= redone < EVERY + 1, per_process
    assert len(per_process) == 2  # rank 0 of the killed attempt, rank 0 of the resumed one


def _engine_rows_logged(temp_root: str, event: str) -> int:
    """Rows the engine actors logged as `event` ("started", "generated"; pipelines.llm.EngineActor, a line per
    batch), summed over every node's worker logs (the killed node's too)."""
    pattern = re.compile(rf"engine batch: (\d+) rows {event}\b")
    return sum(max(sum(map(int, pattern.findall(text))) for text in texts) for texts in _worker_logs(temp_root).values())


def _engine_actor_nodes(cluster) -> dict[str, str]:
    """actor_id -> node name of the ALIVE engine actors."""
    names = _nodes(cluster)
    actors = state(cluster.address, "actors")
    return {a["actor_id"]: names.get(a["node_id"], "?") for a in actors
            if "EngineActor" in a.get("class_name", "") and a["state"] == "ALIVE"}


def test_distill_spreads_its_engine_actors_over_nodes_and_survives_losing_one(cluster, tmp_path):
    """`ray job submit` of jobs.distill (transformers on the tiny model, 2 engine replicas of 1 CPU): Ray Data
    puts the replicas on two worker nodes; one of those nodes is SIGKILLed once parts are written and a
    replacement joins. The job ends with every item once in its outputs (a failed job is submitted again
    and resumes from its parts); the rows redone (begun more than once: in flight on the lost node, or
    finished there and lost with its object store) are counted from the engine actors' logs."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    from reasonguard.datasets import load_demo
    from reasonguard.io import read_parts

    # Two 1-CPU worker nodes hold the replicas; one more gives the light pre/post-processing tasks a CPU.
    joined = _add_worker(cluster, 4)
    assert joined.returncode == 0, joined.stdout + joined.stderr
    out, limit = tmp_path / "shared" / "distill", 32
    started_before, generated_before = (_engine_rows_logged(cluster.temp_root, e) for e in ("started", "generated"))
    cmd = [str(VENV_BIN / "ray"), "job", "submit", "--no-wait", "--address", cluster.address, "--working-dir", ".",
           "--runtime-env", "cluster/runtime_env.yaml", "--", "python", "-m", "jobs.distill",
           "--config", "cluster/configs/distill_local.yaml", "--set", f"output_dir={out}",
           "--set", "engine={kind: transformers, model: tiny}", "--set", "constrained=false",
           "--set", f"data=[{{dataset: demo, split: train, limit: {limit}}}]",
           "--set", "sampling={temperature: 0.6, top_p: 0.95, max_tokens: 48, seed: 0}",
           "--set", "pipeline={batch_size: 2, concurrency: 2, gpus_per_replica: 0, flush_every: 2}"]
    client = JobSubmissionClient(cluster.address)

    def submit() -> str:
        done = _run(cmd, cluster.env, timeout=300)
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
        return re.search(r"Job '([^']+)' submitted successfully", done.stdout + done.stderr).group(1)

    def wait(job_id: str) -> JobStatus:
        deadline = time.monotonic() + 600
        while (status := client.get_job_status(job_id)) not in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}:
            assert time.monotonic() < deadline, client.get_job_logs(job_id)[-4000:]
            time.sleep(1)
        return status

    t0 = time.monotonic()
    first = submit()
    deadline, spread = time.monotonic() + 400, {}
    while not (len(set(spread.values())) == 2 and list((out / "parts").glob("part-*.parquet"))):
        assert time.monotonic() < deadline and client.get_job_status(first) in {JobStatus.PENDING, JobStatus.RUNNING}, (
            client.get_job_status(first), spread, client.get_job_logs(first)[-4000:])
        time.sleep(0.2)
        spread = _engine_actor_nodes(cluster)
    victim = sorted(spread.values())[0]
    written_before = len(read_parts(out / "parts"))
    t_kill = time.monotonic()
    killed = _run(["bash", str(SCRIPTS / "stop_local.sh"), "--node", victim, "--kill"], cluster.env, timeout=60)
    assert killed.returncode == 0, killed.stdout + killed.stderr
    assert written_before < limit, "the kill must land mid-run"
    joined = _add_worker(cluster, 5)  # a replacement, so both replicas fit again
    assert joined.returncode == 0, joined.stdout + joined.stderr
    jobs = [(first, wait(first))]
    if jobs[-1][1] != JobStatus.SUCCEEDED:  # the job failed with the node: the same command resumes from its parts
        second = submit()
        jobs.append((second, wait(second)))
    assert jobs[-1][1] == JobStatus.SUCCEEDED, client.get_job_logs(jobs[-1][0])[-4000:]

    ids = [e.id for e in load_demo("train")[:limit]]
    assert Counter(r["id"] for r in read_parts(out / "parts")) == Counter(ids)  # every item once: nothing lost, no repeat
    stats = json.loads((out / "stats.json").read_text())
    assert stats["total"] == limit and stats["dropped"]["inference_error"] == 0, stats
    started = _engine_rows_logged(cluster.temp_root, "started") - started_before
    generated = _engine_rows_logged(cluster.temp_root, "generated") - generated_before
    engine_actors = [a for a in state(cluster.address, "actors") if "EngineActor" in a.get("class_name", "")]
    restarts = sum(int(a.get("num_restarts") or 0) for a in engine_actors)
    report = {
        "actors_on": sorted(set(spread.values())), "killed_node": victim, "rows_written_before_kill": written_before,
        "jobs": [str(status) for _, status in jobs], "rows_started": started, "rows_generated": generated,
        "rows_redone": started - limit, "rows_generated_twice": generated - limit,
        "engine_actors": len(engine_actors), "engine_actor_restarts": restarts,
        "kill_to_end_s": round(time.monotonic() - t_kill, 1), "job_total_s": round(time.monotonic() - t0, 1),
    }
    print("\nDISTILL NODE LOSS REPORT " + json.dumps(report))
    assert not any(n == "head" for n in spread.values())
    assert started >= generated >= limit, report  # every row generated at least once, as the actors logged it
    assert restarts >= 1 or len(engine_actors) > 2, report  # the lost replica was restarted or replaced elsewhere
