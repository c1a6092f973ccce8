#!/usr/bin/env bash
# Stop the local cluster that start_local_head.sh / add_local_worker.sh started (found through its
# node folders under RAY_TEMP_ROOT, default /tmp/rg-ray). Other Ray instances on the machine (a
# test's ray.init(), another head) are left running.
#
#   cluster/scripts/stop_local.sh          # this cluster only
#   cluster/scripts/stop_local.sh --all    # `ray stop --force`: EVERY Ray process of this user
#   cluster/scripts/stop_local.sh --node worker-1          # one node only (its folder under RAY_TEMP_ROOT)
#   cluster/scripts/stop_local.sh --node worker-1 --kill   # SIGKILL at once: a node crash, for failure drills
# Knobs: RAY_TEMP_ROOT (as for the start scripts), RAY_STOP_GRACE_S (12).
set -euo pipefail
source "$(dirname "$0")/_local_common.sh"

if [ "${1:-}" = "--all" ]; then
  exec "$RAY" stop --force
fi
usage() { echo "usage: $0 [--all] | [--node head|worker-N] [--kill]" >&2; exit 2; }
node="" kill_now=""
while [ $# -gt 0 ]; do
  case "$1" in
    --node) [ -n "${2:-}" ] || usage; node="$2"; shift 2 ;;
    --kill) kill_now=1; shift ;;
    *) usage ;;
  esac
done
case "$node" in */*|.*) usage ;; esac
if [ -n "$node" ]; then
  [ -d "$RAY_TEMP_ROOT/$node" ] || { echo "error: no node folder $RAY_TEMP_ROOT/$node" >&2; exit 1; }
  RAY_TEMP_ROOT="$RAY_TEMP_ROOT/$node"  # that node's daemons name their own folder
fi

# This cluster's processes: the daemons whose command line names "$RAY_TEMP_ROOT/" (gcs_server,
# raylet, dashboard, monitors), the other members of their process groups (the Ray client server;
# start_local_head.sh runs `ray start` under setsid, so those groups hold only Ray daemons), and
# all their descendants (agents, workers, job drivers, vLLM engines). Never this script's group.
our_pids() {
  ps -e -o pid=,ppid=,pgid=,stat=,uid=,args= | ROOT="$RAY_TEMP_ROOT/" ME="$$" ME_PGID="$(ps -o pgid= -p $$ | tr -d ' ')" MY_UID="$(id -u)" awk '
    $4 ~ /^Z/ { next }  # exited, waiting to be reaped: nothing left to stop
    { pid = $1; ppid[pid] = $2; pgid[pid] = $3; mine[pid] = ($5 == ENVIRON["MY_UID"]); all[pid] = 1
      if (mine[pid] && index($0, ENVIRON["ROOT"]) && $3 != ENVIRON["ME_PGID"]) { mark[pid] = 1; group[$3] = 1 } }
    END {
      for (p in all) if (mine[p] && (pgid[p] in group)) mark[p] = 1
      do { grew = 0
           for (p in all) if (mine[p] && !(p in mark) && (ppid[p] in mark)) { mark[p] = 1; grew = 1 }
      } while (grew)
      for (p in mark) if (p != ENVIRON["ME"] && pgid[p] != ENVIRON["ME_PGID"]) print p
    }'
}

pids="$(our_pids)"
if [ -z "$pids" ]; then
  echo ">> no process of the local cluster under $RAY_TEMP_ROOT is running"
  exit 0
fi
if [ -n "$kill_now" ]; then
  echo ">> killing (SIGKILL) $(echo "$pids" | wc -w) process(es) under $RAY_TEMP_ROOT"
  kill -KILL $pids 2>/dev/null || true
  echo ">> killed"
  exit 0
fi
echo ">> stopping $(echo "$pids" | wc -w) process(es) of the local cluster under $RAY_TEMP_ROOT"
kill -TERM $pids 2>/dev/null || true
# Like `ray stop`: a grace period for a clean exit (the raylet takes ~10 s), then SIGKILL.
grace="${RAY_STOP_GRACE_S:-12}"
for _ in $(seq $((grace * 2))); do
  pids="$(our_pids)"
  [ -z "$pids" ] && break
  sleep 0.5
done
if [ -n "$pids" ]; then
  echo ">> $(echo "$pids" | wc -w) process(es) still running after ${grace} s: SIGKILL"
  kill -KILL $pids 2>/dev/null || true
fi
echo ">> stopped"
