"""The local chain on a multi-node Ray cluster on this machine, every stage a Ray job (`jobs.chain --address`).

Starts a head with no CPUs (it runs the drivers, Train's controller and Serve's controller) and two
worker nodes of `--worker-cpus` each (separate raylets, each with its own resources and node folder,
started by cluster/scripts), runs `python -m jobs.chain <chain> --address <head>` (the checkout in
place, so every node reads and writes the same outputs folder), and prints per stage its time and
exit code, then where Ray put the work: for each actor class (Ray Train workers, engine actors, vLLM
actors, Serve replicas) the nodes it ran on, read from Ray's state API. Stops the cluster at the end.

    .venv/bin/python -m benchmarks.chain_local_cluster                   # the local chain on the tiny model
    .venv/bin/python -m benchmarks.chain_local_cluster --until train     # a prefix of it
    .venv/bin/python -m benchmarks.chain_local_cluster --model smollm2   # on SmolLM2 (slower)

About 35 minutes for all sixteen stages on a 2-core machine (docs/benchmarks.md has the run).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from benchmarks.local_cluster import node_names, state, worker_resources

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = REPO_ROOT / "cluster" / "scripts"
PLACED = ("RayTrainWorker", "EngineActor", "vLLMEngineStageUDF", "MapWorker", "ServeReplica")


def placement(address: str) -> dict[str, dict[str, int]]:
    """For each actor class that does the work: how many of its actors ran on each node (dead ones too)."""
    names = node_names(address)
    found: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for actor in state(address, "actors"):
        cls = actor.get("class_name") or ""
        label = next((p for p in PLACED if p in cls), None)
        if label:
            found[label][names.get(actor.get("node_id"), "?")] += 1
    return {k: dict(sorted(v.items())) for k, v in sorted(found.items())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chain", default="cluster/chains/local.yaml")
    parser.add_argument("--model", default="tiny", help="replaces the chain's smollm2 alias (default tiny)")
    parser.add_argument("--outputs", default="outputs/chain_cluster/", help="replaces the chain's outputs/ root")
    parser.add_argument("--worker-cpus", type=int, default=1)
    parser.add_argument("--from", dest="start")
    parser.add_argument("--until")
    args = parser.parse_args(argv)

    temp_root = tempfile.mkdtemp(prefix="rgc", dir="/tmp")  # short: Ray's socket paths stay below 107 bytes
    env = {**os.environ, "RAY_TEMP_ROOT": temp_root, "RAY_NUM_CPUS": "0", "RAY_WORKER_NUM_CPUS": str(args.worker_cpus),
           "RAY_OBJECT_STORE_MB": "300", "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)
    address = f"http://127.0.0.1:{env.get('RAY_DASHBOARD_PORT', '8265')}"
    logs = args.outputs.rstrip("/") + "/logs"
    try:
        subprocess.run(["bash", str(SCRIPTS / "start_local_head.sh")], env=env, check=True, cwd=REPO_ROOT)
        for n in (1, 2):
            worker_env = {**env, "RAY_WORKER_RESOURCES": worker_resources(n)}
            subprocess.run(["bash", str(SCRIPTS / "add_local_worker.sh"), str(n)], env=worker_env, check=True, cwd=REPO_ROOT)
        nodes = sorted(node_names(address).values())
        print(f"cluster: {nodes} ({args.worker_cpus} CPU per worker node, head 0)", flush=True)
        chain = [sys.executable, "-m", "jobs.chain", args.chain, "--address", address, "--logs", logs,
                 "--replace", f"smollm2={args.model}", "--replace", f"outputs/={args.outputs}",
                 *(["--from", args.start] if args.start else []), *(["--until", args.until] if args.until else [])]
        started = time.monotonic()
        code = subprocess.call(chain, env=env, cwd=REPO_ROOT)
        total = time.monotonic() - started
        record = json.loads((REPO_ROOT / logs / "chain_run.json").read_text()) if (REPO_ROOT / logs / "chain_run.json").exists() else {}
        for stage in record.get("stages", []):
            print(f"  {stage['position']:2d} {stage['stage']:<10} exit {stage['exit_code']}  {stage['seconds']:7.1f} s  "
                  f"{stage.get('submission_id', '')}")
        where = placement(address)
        print("placement (actors per node, over the whole run):")
        for cls, per_node in where.items():
            print(f"  {cls:<20} {per_node}")
        print("CHAIN CLUSTER REPORT " + json.dumps({"exit_code": code, "seconds": round(total, 1), "nodes": nodes,
                                                   "stages": len(record.get("stages", [])), "placement": where}))
        return code
    finally:
        subprocess.run(["bash", str(SCRIPTS / "stop_local.sh")], env=env, cwd=REPO_ROOT)


if __name__ == "__main__":
    sys.exit(main())
