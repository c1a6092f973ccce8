"""The Ray Serve application: `build_app(args)` for `serve run` / `serve deploy` / KubeRay.

    serve run cluster/serve/guard_serve_local.yaml            # Serve config; args.config -> ServeConfig
    python -m jobs.serve --config cluster/configs/serve_local.yaml

Two deployments: `GuardIngress` (the FastAPI app of `serve.api`, no model: probes answer at once,
failed replicas are failed over; see serve/ingress.py) in front of `GuardDeployment` (each replica
loads one engine and runs the guard logic). `serve.deployment` is applied here from `ServeConfig`
(replicas or autoscaling, resources, queue bounds, health checks), so the YAML under cluster/serve/
only points at a config.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

from ray import serve

from reasonguard.config import load_config
from reasonguard.config.serve import ServeConfig
from serve.guard import GuardServer, hf_token_counter
from serve.service import GuardService

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
LATENCY_BOUNDARIES_S = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60, 120, 300]
BATCH_BOUNDARIES = [1, 2, 4, 8, 16, 32, 64, 128]


class RayServeMetrics:
    """Application metrics through `ray.serve.metrics` (exported by Ray's Prometheus endpoint with
    Serve's own, tagged with deployment, replica and application)."""

    def __init__(self) -> None:
        from ray.serve import metrics

        self._requests = metrics.Counter(
            "reasonguard_requests", description="Guard HTTP requests by endpoint, mode and status code.",
            tag_keys=("endpoint", "mode", "status"),
        )
        self._verdicts = metrics.Counter(
            "reasonguard_verdicts", description="Judged conversations by endpoint, mode and verdict (harmful/unharmful/unparsed).",
            tag_keys=("endpoint", "mode", "verdict"),
        )
        self._latency = metrics.Histogram(
            "reasonguard_request_latency_s", description="Guard request latency in seconds (queueing included).",
            boundaries=LATENCY_BOUNDARIES_S, tag_keys=("endpoint", "mode"),
        )
        self._batch = metrics.Histogram(
            "reasonguard_engine_batch_size", description="Conversations per engine call.", boundaries=BATCH_BOUNDARIES,
        )
        self._failovers = metrics.Counter(
            "reasonguard_failovers", description="Calls sent again to another replica after theirs died.",
            tag_keys=("endpoint",),
        )

    def request(self, endpoint: str, mode: str, status: int, latency_s: float) -> None:
        self._requests.inc(1, tags={"endpoint": endpoint, "mode": mode, "status": str(status)})
        if status == 200:
            self._latency.observe(latency_s, tags={"endpoint": endpoint, "mode": mode})

    def verdict(self, endpoint: str, mode: str, verdict: str, count: int = 1) -> None:
        self._verdicts.inc(count, tags={"endpoint": endpoint, "mode": mode, "verdict": verdict})

    def batch(self, size: int) -> None:
        self._batch.observe(size)

    def failover(self, endpoint: str) -> None:
        self._failovers.inc(1, tags={"endpoint": endpoint})


@functools.cache
def node_metrics_url() -> str:
    """Ray's metrics exporter of this replica's node (asked of Ray once per replica, not per scrape)."""
    import ray

    node_id = ray.get_runtime_context().get_node_id()
    node = next(n for n in ray.nodes() if n["NodeID"] == node_id)
    return f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"


async def node_metrics() -> str:
    """The Prometheus text of Ray's metrics exporter on this replica's node (Serve's metrics and ours)."""
    import httpx

    async with httpx.AsyncClient(timeout=5) as client:
        r = await client.get(node_metrics_url())
        r.raise_for_status()
        return r.text


def token_counter(config: ServeConfig):
    """A tokenizer-based prompt counter for local models (None for remote engines)."""
    if config.engine.kind == "openai":
        return None
    from reasonguard.models import resolve_model

    return hf_token_counter(resolve_model(config.engine.model))


def with_serve_batching(service: GuardService) -> GuardService:
    """With `batching.strategy: serve`, concurrent jobs of all requests share engine calls through
    `@serve.batch` (the queue strategy is GuardService's own)."""
    batching = service.config.batching
    if batching.enabled and batching.strategy == "serve":
        service.submit = serve.batch(
            max_batch_size=batching.max_batch_size, batch_wait_timeout_s=batching.batch_wait_timeout_s
        )(service.run_batch)
    return service


class GuardDeployment:
    """One model replica: an engine and the guard logic, called by the ingress through a handle."""

    async def __init__(self, config: dict[str, Any]) -> None:
        """Async so that it runs on the replica's event loop, where AsyncLLM must live (engine_mode 'async')."""
        from reasonguard.engines import build_engine

        self.config = ServeConfig.model_validate(config)
        logging.getLogger("serve").setLevel(self.config.log_level)
        if self.config.resolved_engine_mode == "async":
            engine = build_engine(self.config.engine, asynchronous=True)
            server = GuardServer(engine, self.config, count_tokens=engine.count_tokens)
        else:
            server = GuardServer(build_engine(self.config.engine), self.config, count_tokens=token_counter(self.config))
        self.service = with_serve_batching(GuardService(server, self.config, metrics=RayServeMetrics()))
        await self._warm_up(server)

    async def _warm_up(self, server: GuardServer) -> None:
        """One short generation, so a broken engine fails the start (not the first user) and the
        first request does not pay one-off costs."""
        from serve.engine_runner import raise_first_error
        from serve.schemas import GuardRequest

        plan = server.plan_guard(GuardRequest(prompt="warm-up", score_only=True))
        if self.config.resolved_engine_mode == "async":
            raise_first_error([await server.generate_async(plan.jobs[0])])
        else:
            raise_first_error(server.generate(plan.jobs))

    async def guard(self, request) -> dict:
        """A /v1/guard request the ingress validated -> {"ok": response} or an error envelope."""
        from serve.ingress import call_in_envelope

        return await call_in_envelope(self.service.guard(request))

    async def chat_completion(self, request) -> dict:
        from serve.ingress import call_in_envelope

        return await call_in_envelope(self.service.chat_completion(request))

    async def health(self) -> dict:
        return {"healthy": self.service.server.healthy, "pending": self.service.pending}

    def check_health(self) -> None:
        self.service.server.check_health()

    def __del__(self) -> None:
        service = getattr(self, "service", None)
        if service is not None:
            service.server.close()


@serve.ingress()
class GuardIngress:
    """The HTTP front: the FastAPI app of `serve.api` over a `RemoteGuardService` (serve/ingress.py)."""

    async def __init__(self, model, config: dict[str, Any]) -> None:
        """Async: the readiness probe of the model replicas runs on this replica's event loop."""
        from serve.ingress import RemoteGuardService

        self.config = ServeConfig.model_validate(config)
        logging.getLogger("serve").setLevel(self.config.log_level)
        self.service = RemoteGuardService(model, self.config, metrics=RayServeMetrics())
        self.service.start_probe()

    def __serve_build_asgi_app__(self):
        from serve.api import create_api

        return create_api(self.service, metrics_source=node_metrics if self.config.operations.metrics_path else None)


def ingress_options(config: ServeConfig) -> dict[str, Any]:
    """The front's options; it runs with the replicas' environment (the auth token variable, if set there)."""
    ing = config.ingress
    actor: dict[str, Any] = {"num_cpus": ing.num_cpus}
    if config.replica.env_vars:
        actor["runtime_env"] = {"env_vars": dict(config.replica.env_vars)}
    return {"name": "GuardIngress", "num_replicas": ing.num_replicas, "max_ongoing_requests": ing.max_ongoing_requests,
            "ray_actor_options": actor, "health_check_period_s": 5,
            "graceful_shutdown_timeout_s": config.replica.graceful_shutdown_timeout_s}


def deployment_options(config: ServeConfig) -> dict[str, Any]:
    """`serve.deployment` options from the config: replicas or autoscaling, resources, queues, health."""
    rep = config.replica
    options: dict[str, Any] = {
        "name": config.deployment_name,
        "max_ongoing_requests": rep.max_ongoing_requests,
        "max_queued_requests": rep.max_queued_requests,
        "ray_actor_options": {"num_cpus": rep.num_cpus, "num_gpus": rep.num_gpus},
        "health_check_period_s": rep.health_check_period_s,
        "health_check_timeout_s": rep.health_check_timeout_s,
        "graceful_shutdown_timeout_s": rep.graceful_shutdown_timeout_s,
    }
    if rep.max_queued_requests >= 0:
        options["backpressure_config"] = {"status_code": 503, "retry_after_s": rep.retry_after_s}
    if rep.env_vars:
        options["ray_actor_options"]["runtime_env"] = {"env_vars": dict(rep.env_vars)}
    if rep.num_replicas is not None:
        options["num_replicas"] = rep.num_replicas
    else:
        options["autoscaling_config"] = config.autoscaling.to_serve()
    return options


def build_application(config: ServeConfig):
    """The bound Serve application for a validated config."""
    # exclude_unset: EngineConfig rejects fields of other engine kinds once they are set explicitly.
    payload = config.model_dump(mode="json", exclude_unset=True)
    model = serve.deployment(**deployment_options(config))(GuardDeployment).bind(payload)
    return serve.deployment(**ingress_options(config))(GuardIngress).bind(model, payload)


def resolve_config_path(path: str) -> Path:
    """A config path as given, else relative to the repository (Serve builds apps in another cwd)."""
    candidate = Path(path)
    if candidate.exists() or candidate.is_absolute():
        return candidate
    return REPO_ROOT / candidate


def build_app(args: dict[str, Any]):
    """Serve's application builder: args = {config: <ServeConfig YAML>, overrides: {dotted.key: value}}."""
    args = dict(args or {})
    if "config" not in args:
        raise ValueError("build_app needs args.config: the path of a ServeConfig YAML (e.g. cluster/configs/serve_local.yaml)")
    unknown = set(args) - {"config", "overrides"}
    if unknown:
        raise ValueError(f"unknown build_app args: {sorted(unknown)} (expected config, overrides)")
    config = load_config(resolve_config_path(str(args["config"])), ServeConfig, dict(args.get("overrides") or {}))
    return build_application(config)
