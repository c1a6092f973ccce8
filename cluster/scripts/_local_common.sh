# Shared settings of start_local_head.sh, add_local_worker.sh and stop_local.sh (sourced, not run).
# Every knob is an environment variable; use the same values for all three scripts.
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# The venv's ray when there is one: the head must run the same Ray (2.60.0) as the clients.
if [ -x "$REPO_ROOT/.venv/bin/ray" ]; then
  RAY="$REPO_ROOT/.venv/bin/ray"
  PY="$REPO_ROOT/.venv/bin/python"
  # Job entrypoints say `python`: the nodes inherit this PATH, so that is the venv's python too.
  export PATH="$REPO_ROOT/.venv/bin:$PATH"
else
  RAY="$(command -v ray || true)"
  PY="$(command -v python3 || true)"
  [ -n "$RAY" ] || { echo "error: no .venv/bin/ray and no ray on PATH (run: make venv)" >&2; exit 1; }
fi
RAY_NODE_IP="${RAY_NODE_IP:-127.0.0.1}"
RAY_HEAD_PORT="${RAY_HEAD_PORT:-6379}"
RAY_DASHBOARD_PORT="${RAY_DASHBOARD_PORT:-8265}"
RAY_CLIENT_PORT="${RAY_CLIENT_PORT:-10001}"
# The dashboard agent's HTTP port (the job API of its node); worker N uses RAY_AGENT_PORT + N.
RAY_AGENT_PORT="${RAY_AGENT_PORT:-52365}"
# Each node of this local cluster keeps its sockets, logs and session files under its own folder
# here; stop_local.sh finds this cluster's processes by this path (and leaves other Rays alone).
RAY_TEMP_ROOT="${RAY_TEMP_ROOT:-/tmp/rg-ray}"
# Ray 2.60 turns token auth on for a fresh cluster when a token file (~/.ray/auth_token) exists or
# ray.init() made one. A dev head bound to 127.0.0.1 runs without it (disabled), so that
# `ray job submit` / `serve deploy` need no token. RAY_AUTH_MODE=token turns it on: then export
# RAY_AUTH_MODE=token in every shell that submits (the token is read from ~/.ray/auth_token).
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-disabled}"
export RAY_USAGE_STATS_ENABLED=0
# Jobs and workers inherit the environment of `ray start`. A job submitted with --working-dir .
# runs in a temporary copy of the checkout, where the registered datasets' default folder
# (../shared/datasets beside the checkout) does not exist: point at it by absolute path.
if [ -z "${REASONGUARD_DATASETS_DIR:-}" ] && [ -d "$REPO_ROOT/../shared/datasets" ]; then
  export REASONGUARD_DATASETS_DIR="$(cd "$REPO_ROOT/../shared/datasets" && pwd)"
fi
export TOKENIZERS_PARALLELISM="${TOKENIZERS_PARALLELISM:-false}"

# The dashboard binds 127.0.0.1 only: a dev head is not reachable from the network.
dashboard_url() { echo "http://127.0.0.1:$RAY_DASHBOARD_PORT"; }

# 0 when something answers HTTP at the dashboard address (any status: 401 under token auth too).
dashboard_up() {
  "$PY" - "$(dashboard_url)/api/version" <<'PYEOF' >/dev/null 2>&1
import sys, urllib.error, urllib.request
try:
    urllib.request.urlopen(sys.argv[1], timeout=2)
except urllib.error.HTTPError:
    pass
PYEOF
}
