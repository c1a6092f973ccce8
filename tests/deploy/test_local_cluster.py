"""The laptop path for real: a local Ray head (dashboard + job server) and a second worker node
started by cluster/scripts, a stage submitted with `ray job submit` and with `reasonguard submit`,
its output files checked, a bad config reported as a failed job, a job stopped by --stop and by
Ctrl-C, and the cluster stopped by cluster/scripts/stop_local.sh without leftovers.

The cluster uses its own ports and node folders (RAY_TEMP_ROOT), so other Ray instances on the
machine are left alone. Token auth is off on the head (RAY_AUTH_MODE=disabled, see RAY-NOTES).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = REPO_ROOT / "cluster" / "scripts"
VENV_BIN = REPO_ROOT / ".venv" / "bin"
PREDICT_CONFIG = "cluster/configs/predict_local.yaml"
# The cheapest real stage: the tiny random Llama through transformers, two demo items, one mode.
SMALL_PREDICT = [
    "--set", "engine={kind: transformers, model: tiny}",
    "--set", "data=[{dataset: demo, split: test, limit: 2}]",
    "--set", "modes=[no_think]",
    "--set", "n_samples=1",
    "--set", "max_tokens_by_mode={no_think: 8}",
]
# Slow enough (many long samples) to be stopped while it runs.
LONG_PREDICT = [
    "--set", "engine={kind: transformers, model: tiny}",
    "--set", "data=[{dataset: demo}]",
    "--set", "n_samples=8",
    "--set", "max_tokens_by_mode={no_think: 400, think: 400}",
]

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(900)]


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def start_head(env: dict, attempts: int = 3) -> None:
    """Start the head with the scripts on free ports written into `env`. The scripts take fixed port
    numbers (an operator needs known addresses), so a port can be taken between choosing and Ray
    binding it: then the head fails to start, and it is stopped and started again on other ports."""
    output = ""
    for _ in range(attempts):
        head, dashboard, client, agent = _free_ports(4)
        env.update({"RAY_HEAD_PORT": str(head), "RAY_DASHBOARD_PORT": str(dashboard),
                    "RAY_CLIENT_PORT": str(client), "RAY_AGENT_PORT": str(agent)})  # worker N's agent: agent + N
        started = _run(["bash", str(SCRIPTS / "start_local_head.sh")], env, timeout=180)
        if started.returncode == 0:
            return
        output = started.stdout + started.stderr
        _run(["bash", str(SCRIPTS / "stop_local.sh")], env, timeout=120)
    raise AssertionError(f"the head did not start in {attempts} attempts:\n{output}")


def dashboard_address(env: dict) -> str:
    return f"http://127.0.0.1:{env['RAY_DASHBOARD_PORT']}"


def _run(cmd, env, timeout, cwd=REPO_ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def stop_cluster(env: dict, temp_root: str) -> None:
    """stop_local.sh, then check that no process of this cluster is left and remove its folders."""
    stopped = _run(["bash", str(SCRIPTS / "stop_local.sh")], env, timeout=120)
    left = _our_processes(temp_root)
    shutil.rmtree(temp_root, ignore_errors=True)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert not left, f"processes of the local cluster left running: {left}"


def _our_processes(temp_root: str) -> list[str]:
    """Live processes whose command line names the cluster's node folders (zombies are already gone)."""
    out = subprocess.run(["ps", "-e", "-o", "pid=,stat=,args="], capture_output=True, text=True).stdout
    rows = [line.split(None, 2) for line in out.splitlines() if line.strip()]
    return [" ".join(r) for r in rows if len(r) == 3 and not r[1].startswith("Z") and temp_root + "/" in r[2]]


@pytest.fixture(scope="module")
def cluster(tiny_model_dir):
    """A two-node local cluster from cluster/scripts (head: 2 CPUs, worker: 1 CPU + rg_worker)."""
    missing = [p for p in ("jobs/predict.py", PREDICT_CONFIG) if not (REPO_ROOT / p).exists()]
    assert not missing, f"{missing} missing from the checkout: no stage to submit"
    assert (VENV_BIN / "ray").exists() or shutil.which("ray"), "no `ray` CLI (.venv/bin/ray or on PATH)"
    # Short: Ray's socket paths under the temp dir must stay below the 107-byte AF_UNIX limit.
    temp_root = tempfile.mkdtemp(prefix="rgt", dir="/tmp")
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "RAY_TEMP_ROOT": temp_root,
        "RAY_NUM_CPUS": "2",
        "RAY_WORKER_NUM_CPUS": "1",
        "RAY_OBJECT_STORE_MB": "256",
        "RAY_AUTH_MODE": "disabled",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("RAY_ADDRESS", None)
    try:
        start_head(env)
        joined = _run(["bash", str(SCRIPTS / "add_local_worker.sh"), "1"], env, timeout=120)
        assert joined.returncode == 0, joined.stdout + joined.stderr
        yield SimpleNamespace(address=dashboard_address(env), env=env, temp_root=temp_root)
    finally:
        stop_cluster(env, temp_root)


def _submit_cmd(cluster, *args: str) -> list[str]:
    return [sys.executable, "-m", "reasonguard.cli", "submit", *args, "--address", cluster.address]


def _job_status(cluster, job_id: str) -> str:
    from ray.job_submission import JobSubmissionClient

    return str(JobSubmissionClient(cluster.address).get_job_status(job_id))


def _check_predictions(out_dir: Path, n_rows: int) -> None:
    import pyarrow.parquet as pq

    table = pq.read_table(out_dir / "predictions.parquet")
    assert table.num_rows == n_rows
    rows = table.to_pylist()
    assert {r["dataset"] for r in rows} == {"demo"} and {r["mode"] for r in rows} == {"no_think"}
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["model"] == "tiny" and metrics["reports"]


def test_head_and_worker_form_one_cluster(cluster):
    with urllib.request.urlopen(f"{cluster.address}/api/v0/nodes?detail=1&limit=10", timeout=30) as resp:
        nodes = json.loads(resp.read())["data"]["result"]["result"]
    alive = [n for n in nodes if n["state"] == "ALIVE"]
    assert len(alive) == 2
    head = next(n for n in alive if n["is_head_node"])
    worker = next(n for n in alive if not n["is_head_node"])
    assert head["resources_total"]["CPU"] == 2
    assert worker["resources_total"]["CPU"] == 1 and worker["resources_total"]["rg_worker"] == 1


def test_ray_job_submit_cli_runs_a_stage(cluster, tmp_path):
    out_dir = tmp_path / "cli"
    cmd = [
        str(VENV_BIN / "ray"), "job", "submit", "--address", cluster.address,
        "--working-dir", ".", "--runtime-env", "cluster/runtime_env.yaml", "--",
        "python", "-m", "jobs.predict", "--config", PREDICT_CONFIG, "--set", f"output_dir={out_dir}", *SMALL_PREDICT,
    ]
    done = _run(cmd, cluster.env, timeout=400)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "succeeded" in done.stdout + done.stderr
    _check_predictions(out_dir, 2)


def test_reasonguard_submit_runs_a_stage(cluster, tmp_path):
    out_dir = tmp_path / "ours"
    cmd = _submit_cmd(cluster, "predict", "--config", PREDICT_CONFIG, "--set", f"output_dir={out_dir}", *SMALL_PREDICT)
    done = _run(cmd, cluster.env, timeout=400)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "wrote" in done.stdout + done.stderr  # the job's own log line, streamed back
    job_id = done.stderr.split(">> submitting ", 1)[1].split()[0]
    assert job_id.startswith("reasonguard-predict-")
    assert f">> job {job_id}: SUCCEEDED" in done.stderr
    _check_predictions(out_dir, 2)


def test_bad_config_is_reported_as_a_failed_job(cluster):
    cmd = _submit_cmd(cluster, "predict", "--config", PREDICT_CONFIG, "--set", "engine.kind=nonsense")
    done = _run(cmd, cluster.env, timeout=300)
    assert done.returncode == 1, done.stdout[-4000:] + done.stderr[-4000:]
    assert "engine.kind" in done.stdout + done.stderr  # the stage's validation error, streamed
    job_id = done.stderr.split(">> submitting ", 1)[1].split()[0]
    assert f">> job {job_id}: FAILED" in done.stderr
    assert _job_status(cluster, job_id) == "FAILED"


def test_stop_a_job_by_id(cluster, tmp_path):
    cmd = _submit_cmd(cluster, "predict", "--config", PREDICT_CONFIG, "--set", f"output_dir={tmp_path}", *LONG_PREDICT, "--no-wait")
    submitted = _run(cmd, cluster.env, timeout=120)
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip().splitlines()[-1]
    assert _job_status(cluster, job_id) in ("PENDING", "RUNNING")
    stopped = _run([sys.executable, "-m", "reasonguard.cli", "submit", "--stop", job_id, "--address", cluster.address], cluster.env, timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    assert f">> job {job_id}: STOPPED" in stopped.stderr
    assert _job_status(cluster, job_id) == "STOPPED"


def test_ctrl_c_stops_the_job_on_the_cluster(cluster, tmp_path):
    cmd = _submit_cmd(cluster, "predict", "--config", PREDICT_CONFIG, "--set", f"output_dir={tmp_path}", *LONG_PREDICT)
    # The client must see Ctrl-C even when the suite itself runs as a background job, where the shell set
    # SIGINT to "ignored" and every child would inherit that (a user's terminal does not).
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen: list[str] = []
    running = threading.Event()

    def read():
        for line in proc.stdout:
            seen.append(line)
            if "Running entrypoint" in line:
                running.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert running.wait(180), "".join(seen)[-4000:]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) == 130, "".join(seen)[-4000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(timeout=10)
    job_id = next(line.split(">> submitting ", 1)[1].split()[0] for line in seen if ">> submitting " in line)
    assert any(f">> job {job_id}: STOPPED (interrupted)" in line for line in seen), "".join(seen)[-4000:]
    assert _job_status(cluster, job_id) == "STOPPED"


def test_chain_submits_each_stage_as_a_job_and_stops_at_a_failed_one(cluster, tmp_path):
    """`python -m jobs.chain --address`: one `ray job submit` per stage (sft_data: no engine, seconds), the
    checkout run in place (local:// working dir), so a stage's relative output is where the next finds it."""
    import pyarrow.parquet as pq
    from chain_files import FAILING_AT_B, STAGES, mend_stage_b, write_chain

    write_chain(tmp_path, STAGES, FAILING_AT_B)
    chain = [sys.executable, "-m", "jobs.chain", "chain.yaml", "--logs", "logs", "--address", cluster.address,
             "--runtime-env", str(REPO_ROOT / "cluster/runtime_env.yaml")]

    failed = _run(chain, cluster.env, timeout=400, cwd=tmp_path)
    assert failed.returncode == 1, failed.stdout[-3000:] + failed.stderr[-3000:]
    assert "stage 2/3 (sft_data, b.yaml) failed with exit 1" in failed.stderr, failed.stderr[-3000:]
    assert "submitted to " + cluster.address in failed.stdout
    records = json.loads((tmp_path / "logs/chain_run.json").read_text())["stages"]
    assert [(r["position"], r["exit_code"]) for r in records] == [(1, 0), (2, 1)]
    assert [_job_status(cluster, r["submission_id"]) for r in records] == ["SUCCEEDED", "FAILED"]
    assert pq.read_table(tmp_path / "outputs/a/sft.parquet").num_rows == 8  # written by the job, in the checkout
    assert not (tmp_path / "outputs/c").exists()
    assert "missing/traces.parquet" in failed.stderr  # the job's own error, from the stage log's end

    mend_stage_b(tmp_path)
    resumed = _run([*chain, "--from", "2"], cluster.env, timeout=400, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    records = json.loads((tmp_path / "logs/chain_run.json").read_text())["stages"]
    assert [_job_status(cluster, r["submission_id"]) for r in records] == ["SUCCEEDED", "SUCCEEDED"]
    assert pq.read_table(tmp_path / "outputs/c/sft.parquet").num_rows == 8  # the stage's --set reached the job
