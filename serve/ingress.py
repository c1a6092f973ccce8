"""The HTTP front of the Serve app: answers probes at once, forwards guard calls to the model replicas,
and retries a call on another replica when the one serving it dies.

Why a separate deployment: HTTP requests that reach a model replica share its request queue
(`max_ongoing_requests`), so under a burst the probes waited behind guard calls and Kubernetes saw 503s
or timeouts; and a replica that died took its in-flight requests down with a plain-text 500. The
ingress holds no model (it costs no CPU or GPU reservation), so `/healthz` answers from its own event
loop under any load; guard calls are idempotent, so one whose replica died is sent again (to a
healthy replica: Serve's router drops the dead one), up to `replica.failover_retries` times within the
request's deadline. Every error keeps the JSON contract: a full model queue (Serve's backpressure) is a
503 with Retry-After, a replica that keeps dying is a 503.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from reasonguard.config.serve import ServeConfig
from serve.errors import EngineUnavailable, GuardError, Overloaded
from serve.service import check_bearer, read_token
from serve.schemas import ChatCompletionRequest, ChatCompletionResponse, GuardBatchRequest, GuardBatchResponse, GuardRequest, GuardResponse

log = logging.getLogger(__name__)


def error_envelope(exc: GuardError) -> dict[str, Any]:
    """A GuardError as plain data, to cross the Ray boundary from a model replica to the ingress."""
    return {"error": {"status": exc.status, "kind": exc.kind, "message": exc.message, "param": exc.param,
                      "headers": dict(exc.headers)}}


def error_from_envelope(data: dict[str, Any]) -> GuardError:
    err = GuardError(data["message"], data.get("param"), data.get("headers") or {})
    err.status, err.kind = int(data["status"]), str(data["kind"])
    return err


async def call_in_envelope(coro) -> dict[str, Any]:
    """Run a GuardService call in a model replica: {"ok": response model} or the error envelope.

    Requests and responses cross the handle as the validated pydantic objects (Ray pickles them);
    errors go as data, since a GuardError's param and headers do not survive pickling as an exception."""
    try:
        response = await coro
    except GuardError as exc:
        return error_envelope(exc)
    return {"ok": response}


class ModelView:
    """What the HTTP app reads of 'the server' (readiness, model name) when the model runs elsewhere."""

    def __init__(self, config: ServeConfig) -> None:
        self.model_name = config.model_name
        self.created = int(time.time())
        self.healthy = False  # until a model replica has answered once


class RemoteGuardService:
    """`create_api`'s service for the ingress: the same interface as `GuardService`, calling a
    `GuardDeployment` handle, with failover to another replica when one dies mid-request."""

    def __init__(self, handle, config: ServeConfig, metrics=None) -> None:
        self.handle = handle
        self.config = config
        self.server = ModelView(config)
        self.pending = 0
        self.failovers = 0
        self.metrics = metrics
        self.token = read_token(config)
        self._probe: asyncio.Task | None = None

    def authorize(self, header: str | None) -> None:
        check_bearer(self.token, header)

    def start_probe(self) -> None:
        """Become ready once a model replica answers (retried in the background)."""
        if self._probe is None:
            self._probe = asyncio.get_running_loop().create_task(self._wait_for_model())

    async def _wait_for_model(self) -> None:
        while not self.server.healthy:
            try:
                state = await self.handle.health.remote()
                self.server.healthy = bool(state.get("healthy"))
            except Exception as exc:  # noqa: BLE001 - not up yet: try again
                log.info("waiting for a model replica: %s", type(exc).__name__)
            if not self.server.healthy:
                await asyncio.sleep(1)

    async def guard(self, request: GuardRequest | GuardBatchRequest) -> GuardResponse | GuardBatchResponse:
        return await self._call("guard", request)

    async def chat_completion(self, request: ChatCompletionRequest) -> ChatCompletionResponse:
        return await self._call("chat_completion", request)

    async def _call(self, method: str, request):
        from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError
        from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

        retry_after = self.config.replica.retry_after_s
        deadline = time.monotonic() + self.config.timeouts.max_request_s
        self.pending += 1
        try:
            for attempt in range(self.config.replica.failover_retries + 1):
                try:
                    out = await getattr(self.handle, method).remote(request)
                except BackPressureError:
                    raise Overloaded("every guard replica's queue is full; retry later", retry_after) from None
                except (ActorDiedError, ActorUnavailableError, RayActorError, DeploymentUnavailableError) as exc:
                    if attempt >= self.config.replica.failover_retries or time.monotonic() >= deadline:
                        self.server.healthy = False
                        raise EngineUnavailable(f"the guard replicas serving this request stopped "
                                                f"({type(exc).__name__}); retry later", retry_after) from None
                    self.failovers += 1
                    if self.metrics is not None:
                        self.metrics.failover(method)
                    log.warning("%s: replica lost (%s); retry %d on another replica", method, type(exc).__name__, attempt + 1)
                    await asyncio.sleep(min(0.25 * 2**attempt, 2.0))
                    continue
                if "error" in out:
                    err = error_from_envelope(out["error"])
                    if err.kind == "engine_unavailable":
                        self.server.healthy = False
                    raise err
                self.server.healthy = True
                return out["ok"]
            raise AssertionError("unreachable")
        finally:
            self.pending -= 1
