#!/usr/bin/env bash
# Start a local Ray head: dashboard and job server on http://127.0.0.1:8265, GCS on 127.0.0.1:6379.
#
#   cluster/scripts/start_local_head.sh                      # all cores, token auth off
#   RAY_NUM_CPUS=2 cluster/scripts/start_local_head.sh
#   RAY_AUTH_MODE=token cluster/scripts/start_local_head.sh  # clients then need RAY_AUTH_MODE=token
#   cluster/scripts/add_local_worker.sh                      # optional second node (see there)
#   ray job submit --address http://127.0.0.1:8265 --working-dir . --runtime-env cluster/runtime_env.yaml \
#     -- python -m jobs.distill --config cluster/configs/distill_local.yaml
#   cluster/scripts/stop_local.sh
#
# Knobs (environment): RAY_NUM_CPUS (default: nproc), RAY_OBJECT_STORE_MB, RAY_HEAD_PORT (6379),
# RAY_DASHBOARD_PORT (8265), RAY_CLIENT_PORT (10001), RAY_AGENT_PORT (52365), RAY_TEMP_ROOT (/tmp/rg-ray),
# RAY_AUTH_MODE (disabled). See _local_common.sh.
#
# Outputs: a job submitted with --working-dir . runs in a temporary copy of the checkout, so give
# it absolute output paths (--set output_dir=$PWD/outputs/<stage>), or run the checkout in place:
#   reasonguard submit <stage> --config ... --working-dir local://$PWD
set -euo pipefail
source "$(dirname "$0")/_local_common.sh"

RAY_NUM_CPUS="${RAY_NUM_CPUS:-$(nproc)}"
if dashboard_up; then
  echo "error: something already answers at $(dashboard_url) (another Ray head?)." >&2
  echo "       Stop it (cluster/scripts/stop_local.sh) or pick RAY_DASHBOARD_PORT / RAY_HEAD_PORT." >&2
  exit 1
fi

args=(start --head
  --node-ip-address "$RAY_NODE_IP"
  --port "$RAY_HEAD_PORT"
  --num-cpus "$RAY_NUM_CPUS"
  --num-gpus 0
  --include-dashboard true
  --dashboard-host 127.0.0.1
  --dashboard-port "$RAY_DASHBOARD_PORT"
  --dashboard-agent-listen-port "$RAY_AGENT_PORT"
  --ray-client-server-port "$RAY_CLIENT_PORT"
  --temp-dir "$RAY_TEMP_ROOT/head"
  --disable-usage-stats)
if [ -n "${RAY_OBJECT_STORE_MB:-}" ]; then
  args+=(--object-store-memory "$((RAY_OBJECT_STORE_MB * 1024 * 1024))")
fi
mkdir -p "$RAY_TEMP_ROOT/head"
# From the repository root: processes the head starts inherit this as their working directory.
cd "$REPO_ROOT"
echo ">> $RAY ${args[*]}   (RAY_AUTH_MODE=$RAY_AUTH_MODE)"
# In a session of its own, so that stop_local.sh can stop this node's daemons by process group.
if command -v setsid >/dev/null; then setsid -w "$RAY" "${args[@]}"; else "$RAY" "${args[@]}"; fi

for _ in $(seq 60); do
  dashboard_up && break
  sleep 1
done
dashboard_up || { echo "error: the dashboard did not come up at $(dashboard_url); see $RAY_TEMP_ROOT/head/session_latest/logs" >&2; exit 1; }

cat <<MSG
>> Ray head up: dashboard and job server at $(dashboard_url), GCS at $RAY_NODE_IP:$RAY_HEAD_PORT
>> submit:  reasonguard submit predict --address $(dashboard_url) --config cluster/configs/predict_local.yaml
>>    or:   $RAY job submit --address $(dashboard_url) --working-dir . --runtime-env cluster/runtime_env.yaml -- python -m jobs.predict --config cluster/configs/predict_local.yaml
>> stop:    cluster/scripts/stop_local.sh
MSG
if [ "$RAY_AUTH_MODE" = "token" ]; then
  echo ">> token auth is ON: run 'export RAY_AUTH_MODE=token' in every shell that submits jobs or deploys Serve"
fi
