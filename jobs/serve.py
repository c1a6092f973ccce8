"""`python -m jobs.serve --config cluster/configs/serve_local.yaml`: the guard behind Ray Serve (HTTP).

Locally (starts Ray in-process, serves until Ctrl-C):
    python -m jobs.serve --config cluster/configs/serve_local.yaml
    curl -s http://127.0.0.1:8000/v1/guard -H 'content-type: application/json' -d '{"prompt": "How do I bake bread?"}'
On a running Ray cluster (deploys, then returns because blocking=false):
    ray job submit --address http://127.0.0.1:8265 --working-dir . --runtime-env cluster/runtime_env.yaml \\
      -- python -m jobs.serve --config cluster/configs/serve_gpu.yaml --set blocking=false
or with Serve's own CLI, from the same config (see cluster/serve/guard_serve.yaml):
    serve deploy cluster/serve/guard_serve.yaml --address http://127.0.0.1:8265
On KubeRay: the RayService in kuberay/ is generated from cluster/serve/guard_serve.yaml.

`start(config)` deploys and returns the base URL once the guard answers (tests, demos, benchmarks).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time

from reasonguard.config.serve import ServeConfig

log = logging.getLogger("jobs.serve")


def start(config: ServeConfig, ready_timeout_s: float = 600) -> str:
    """Start (or join) Ray, start Serve's proxy, deploy the guard, wait until it is ready; the base URL."""
    from ray import serve

    from pipelines.ray_utils import init_ray
    from serve.app import build_application

    init_ray(config.ray.address, config.ray.num_cpus, config.ray.wait_for_min_actors_s, operations=config.operations)
    http_options = {"host": config.http.host, "port": config.http.port}
    if config.http.request_timeout_s is not None:
        http_options["request_timeout_s"] = config.http.request_timeout_s
    serve.start(http_options=http_options)
    log.info("deploying %s (%s) on Serve", config.app_name, config.engine.model)
    serve.run(build_application(config), name=config.app_name, route_prefix=config.route_prefix, blocking=False)
    host = "127.0.0.1" if config.http.host in ("0.0.0.0", "::") else config.http.host
    port = config.http.port or proxy_port(host, ready_timeout_s)
    url = f"http://{host}:{port}{config.route_prefix.rstrip('/')}"
    wait_ready(url, ready_timeout_s)
    return url


def proxy_port(host: str, timeout_s: float) -> int:
    """The port Serve's proxy on this node bound for `http.port: 0`: read back from the kernel (the
    proxy actor's listening sockets) and confirmed by Serve's own GET /-/healthz, since Serve does not
    report it. Choosing a free port first and binding it later would race with other processes."""
    import httpx
    import psutil
    import ray
    from ray._private.state import actors

    node_id = ray.get_runtime_context().get_node_id()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        proxies = [a for a in actors(actor_state_name="ALIVE").values()
                   if a["ActorClassName"].endswith("ProxyActor") and a["Address"]["NodeID"] == node_id]
        for proxy in proxies:
            try:
                sockets = psutil.Process(proxy["Pid"]).net_connections(kind="tcp")
            except psutil.Error:
                continue
            for port in sorted({c.laddr.port for c in sockets if c.status == psutil.CONN_LISTEN}):
                try:
                    r = httpx.get(f"http://{host}:{port}/-/healthz", timeout=2)
                except httpx.HTTPError:
                    continue
                if r.status_code == 200 and r.text.strip() == "success":
                    return port
        time.sleep(0.2)
    raise TimeoutError(f"Serve's proxy did not listen on {host} within {timeout_s:.0f} s")


def wait_ready(url: str, timeout_s: float) -> None:
    """Poll GET /readyz through the proxy until it answers 200."""
    import httpx

    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            r = httpx.get(f"{url}/readyz", timeout=5)
            if r.status_code == 200:
                return
            last = f"HTTP {r.status_code}: {r.text[:200]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.5)
    raise TimeoutError(f"the guard at {url} was not ready after {timeout_s:.0f} s ({last})")


def stop(config: ServeConfig) -> None:
    """Remove the application (the proxy and Ray keep running)."""
    from ray import serve

    serve.delete(config.app_name)


def metrics_url() -> str | None:
    """Ray's Prometheus endpoint on this node (Serve's metrics and ours), when Ray runs."""
    import ray

    if not ray.is_initialized():
        return None
    node_id = ray.get_runtime_context().get_node_id()
    node = next((n for n in ray.nodes() if n["NodeID"] == node_id), None)
    if node is None or not node.get("MetricsExportPort"):
        return None
    return f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"


def dashboard_url() -> str | None:
    """Ray's dashboard as the running Ray reports it (Ray moves off a taken port), when there is one."""
    import ray
    from ray._private.worker import get_dashboard_url

    if not ray.is_initialized():
        return None
    address = get_dashboard_url()
    return f"http://{address}" if address else None


def run(config: ServeConfig) -> str:
    url = start(config)
    print(f"guard ready at {url}  (POST {url}/v1/guard, {url}/v1/chat/completions; docs {url}/docs)", flush=True)
    if metrics_url():
        where = f" (also {url}/metrics)" if config.operations.metrics_path else ""
        print(f"Prometheus metrics: {metrics_url()}{where}", flush=True)
    if config.operations.dashboard and not config.ray.address and dashboard_url():
        print(f"Ray dashboard (serve status): {dashboard_url()}", flush=True)
    if not config.blocking:
        return url
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    log.info("shutting down Serve")
    from ray import serve

    serve.shutdown()
    return url


def main(argv=None) -> int:
    from jobs.common import stage_main

    return stage_main(ServeConfig, run, argv, "python -m jobs.serve", "The dual-mode guard behind Ray Serve (HTTP).")


if __name__ == "__main__":
    sys.exit(main())
