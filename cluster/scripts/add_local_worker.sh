#!/usr/bin/env bash
# Add a worker node on this machine to the head started by start_local_head.sh, to try multi-node
# placement on a laptop. The node carries a custom resource, so work can be pinned to it:
#   @ray.remote(resources={"rg_worker": 0.01})   or   .options(resources={"rg_worker": 0.01})
#
#   cluster/scripts/add_local_worker.sh          # worker 1: 1 CPU, {"rg_worker": 1}
#   cluster/scripts/add_local_worker.sh 2        # a second one
#
# Knobs (environment): RAY_WORKER_NUM_CPUS (1), RAY_WORKER_RESOURCES (JSON, default {"rg_worker": 1}),
# RAY_OBJECT_STORE_MB, and the shared ones of _local_common.sh (use the same RAY_AUTH_MODE as the head).
set -euo pipefail
source "$(dirname "$0")/_local_common.sh"

WORKER_ID="${1:-1}"
case "$WORKER_ID" in ''|*[!0-9]*) echo "usage: $0 [worker-number]" >&2; exit 2 ;; esac
RAY_WORKER_NUM_CPUS="${RAY_WORKER_NUM_CPUS:-1}"
default_resources='{"rg_worker": 1}'
RAY_WORKER_RESOURCES="${RAY_WORKER_RESOURCES:-$default_resources}"
dashboard_up || { echo "error: no Ray head at $(dashboard_url); run cluster/scripts/start_local_head.sh first" >&2; exit 1; }

args=(start
  --address "$RAY_NODE_IP:$RAY_HEAD_PORT"
  --node-ip-address "$RAY_NODE_IP"
  --num-cpus "$RAY_WORKER_NUM_CPUS"
  --num-gpus 0
  --resources "$RAY_WORKER_RESOURCES"
  --temp-dir "$RAY_TEMP_ROOT/worker-$WORKER_ID"
  # Two nodes on one host: the agent's default HTTP port is the head's.
  --dashboard-agent-listen-port "$((RAY_AGENT_PORT + WORKER_ID))"
  --disable-usage-stats)
if [ -n "${RAY_OBJECT_STORE_MB:-}" ]; then
  args+=(--object-store-memory "$((RAY_OBJECT_STORE_MB * 1024 * 1024))")
fi
mkdir -p "$RAY_TEMP_ROOT/worker-$WORKER_ID"
cd "$REPO_ROOT"
echo ">> $RAY ${args[*]}"
# In a session of its own, so that stop_local.sh can stop this node's daemons by process group.
if command -v setsid >/dev/null; then setsid -w "$RAY" "${args[@]}"; else "$RAY" "${args[@]}"; fi
echo ">> worker $WORKER_ID joined $RAY_NODE_IP:$RAY_HEAD_PORT with $RAY_WORKER_NUM_CPUS CPU(s) and $RAY_WORKER_RESOURCES"
