"""`GuardService`: the async layer between HTTP and `GuardServer`: admission, deadlines, metrics.

`submit` is how one engine job reaches the engine: a `QueueBatcher` (default) or, under Serve,
a `@serve.batch` function, so concurrent jobs of all requests share engine calls; with batching
off, each job is its own engine call in a worker thread. Either way the event loop never blocks on the
engine, so health checks and other requests stay responsive.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import time
from typing import Awaitable, Callable, Protocol

from reasonguard.config.serve import ServeConfig
from serve.errors import DeadlineExceeded, EngineUnavailable, GuardError, Overloaded, Unauthorized
from serve.engine_runner import Job, raise_first_error
from serve.guard import GuardServer
from serve.schemas import ChatCompletionRequest, ChatCompletionResponse, GuardBatchRequest, GuardRequest

log = logging.getLogger(__name__)

Submit = Callable[[Job], Awaitable["object"]]


class Metrics(Protocol):
    def request(self, endpoint: str, mode: str, status: int, latency_s: float) -> None: ...
    def verdict(self, endpoint: str, mode: str, verdict: str, count: int = 1) -> None: ...
    def batch(self, size: int) -> None: ...


class NullMetrics:
    def request(self, endpoint: str, mode: str, status: int, latency_s: float) -> None:
        pass

    def verdict(self, endpoint: str, mode: str, verdict: str, count: int = 1) -> None:
        pass

    def batch(self, size: int) -> None:
        pass


class QueueBatcher:
    """Batches for a synchronous engine: what arrives while the engine is busy is the next batch.

    One worker per event loop takes up to `max_batch_size` queued jobs the moment the previous
    engine call returns (after lingering `wait_s` when fewer are queued), so an idle engine starts
    at once and a busy one gets full batches. Jobs whose caller gave up (deadline) are dropped
    before they reach the engine.
    """

    def __init__(self, run_batch: Callable[[list[Job]], Awaitable[list]], max_batch_size: int, wait_s: float = 0.0) -> None:
        self.run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.wait_s = wait_s
        self._queue: collections.deque = collections.deque()
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None

    async def submit(self, job: Job):
        loop = asyncio.get_running_loop()
        if self._worker is None or self._worker.done() or self._worker.get_loop() is not loop:
            self._queue.clear()  # only after a loop change (in-process tests): nothing of it can run
            self._wakeup = asyncio.Event()
            self._worker = loop.create_task(self._run())
        future = loop.create_future()
        self._queue.append((job, future))
        self._wakeup.set()
        return await future

    def _take(self) -> list:
        batch = []
        while self._queue and len(batch) < self.max_batch_size:
            job, future = self._queue.popleft()
            if not future.done():  # cancelled by a deadline: skip
                batch.append((job, future))
        return batch

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                if self.wait_s and len(self._queue) < self.max_batch_size:
                    await asyncio.sleep(self.wait_s)
                batch = self._take()
                if not batch:
                    continue
                try:
                    results = await self.run_batch([job for job, _ in batch])
                except Exception as exc:  # noqa: BLE001 - handed to every caller of the batch
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), result in zip(batch, results):
                    if not future.done():
                        future.set_result(result)


def read_token(config: ServeConfig) -> str | None:
    """The bearer token from `auth.token_env` (None: no auth); a required but missing one fails the start."""
    name = config.auth.token_env
    token = os.environ.get(name, "").strip() if name else ""
    if config.auth.required and not token:
        raise RuntimeError(f"auth.required is set but environment variable {name} is empty or missing")
    return token or None


def check_bearer(token: str | None, header: str | None) -> None:
    """Raise Unauthorized unless `header` is `Bearer <token>` (nothing to check when token is None)."""
    if token is None:
        return
    import hmac

    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not value:
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
    if not hmac.compare_digest(value.strip().encode(), token.encode()):
        raise Unauthorized("invalid bearer token")


class GuardService:
    def __init__(self, server: GuardServer, config: ServeConfig, submit: Submit | None = None, metrics: Metrics | None = None) -> None:
        self.server = server
        self.config = config
        self.metrics = metrics or NullMetrics()
        batching = config.batching
        from reasonguard.engines.base import AsyncEngine

        if submit is None and isinstance(server.engine, AsyncEngine):
            submit = server.generate_async  # the engine batches continuously by itself
        elif submit is None and batching.enabled and batching.strategy == "queue":
            submit = QueueBatcher(self.run_batch, batching.max_batch_size, batching.batch_wait_timeout_s).submit
        self.submit: Submit = submit or self.submit_unbatched
        self.pending = 0
        self.token = read_token(config)

    async def submit_unbatched(self, job: Job):
        self.metrics.batch(1)
        return (await asyncio.to_thread(self.server.generate, [job]))[0]

    async def run_batch(self, jobs: list[Job]) -> list:
        """One engine pass for jobs of many requests (the body of QueueBatcher and of the `@serve.batch` submit)."""
        self.metrics.batch(len(jobs))
        return await asyncio.to_thread(self.server.generate, jobs)

    # ------------------------------------------------------------------ admission and deadlines

    @contextlib.contextmanager
    def admit(self, n: int):
        """Hold n conversations' worth of capacity, or refuse with 503 + Retry-After."""
        limit = self.config.limits.max_pending_items
        if self.pending + n > limit:
            raise Overloaded(
                f"the guard is at capacity ({self.pending} conversations in progress, limit {limit}); retry later",
                self.config.replica.retry_after_s,
            )
        if not self.server.healthy:
            raise EngineUnavailable("the guard engine is unhealthy; retry later", self.config.replica.retry_after_s)
        self.pending += n
        try:
            yield
        finally:
            self.pending -= n

    async def _run(self, jobs: list[Job], timeout_s: float) -> list:
        with self.admit(len(jobs)):
            try:
                outputs = await asyncio.wait_for(asyncio.gather(*(self.submit(job) for job in jobs)), timeout_s)
            except asyncio.TimeoutError:
                raise DeadlineExceeded(f"the guard did not answer within {timeout_s:g} s", "timeout_s") from None
        return raise_first_error(outputs)

    def authorize(self, header: str | None) -> None:
        check_bearer(self.token, header)

    # ------------------------------------------------------------------ endpoints

    async def guard(self, request: GuardRequest | GuardBatchRequest):
        start = time.perf_counter()
        mode = "no_think" if request.score_only else (request.mode or self.config.guard.mode)
        label = "score_only" if request.score_only else mode
        try:
            plan = self.server.plan_guard(request)
            outputs = await self._run(plan.jobs, plan.timeout_s)
            response = self.server.finish_guard(plan, outputs, time.perf_counter() - start)
        except GuardError as exc:
            self.metrics.request("guard", label, exc.status, time.perf_counter() - start)
            raise
        results = response.results if plan.batch else [response]
        for result in results:
            verdict = result.response_harm if result.response_harm is not None else result.prompt_harm
            self.metrics.verdict("guard", label, verdict or "unparsed")
        self.metrics.request("guard", label, 200, time.perf_counter() - start)
        return response

    async def chat_completion(self, request: ChatCompletionRequest) -> ChatCompletionResponse:
        start = time.perf_counter()
        mode = "other"
        try:
            plan = self.server.plan_chat(request)
            mode = plan.mode
            output = (await self._run([plan.job], plan.timeout_s))[0]
            response = self.server.finish_chat(output)
        except GuardError as exc:
            self.metrics.request("chat", mode, exc.status, time.perf_counter() - start)
            raise
        from reasonguard.verdict import parse_verdict

        for choice in response.choices:
            verdict = parse_verdict(choice.message.content)
            label = verdict.response_harm or verdict.prompt_harm if verdict.parsed_ok else None
            self.metrics.verdict("chat", mode, label or "unparsed")
        self.metrics.request("chat", mode, 200, time.perf_counter() - start)
        return response
