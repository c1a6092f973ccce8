"""Running guard jobs on an engine: batches grouped by sampling settings, one failing conversation never
failing the others, engine failures classified (input errors vs a failing engine) and counted for the
replica's health. No Ray, no HTTP."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

from reasonguard.decoding import VerdictSpec
from reasonguard.engines.base import Engine, RequestOutput, SamplingConfig
from serve.errors import EngineUnavailable, GuardError, InvalidInput, PayloadTooLarge

log = logging.getLogger(__name__)

# Consecutive engine failures (not caused by input) after which the replica reports itself unhealthy.
MAX_ENGINE_FAILURES = 3


@dataclass(frozen=True)
class Job:
    """One engine request: chat messages, how to sample them, and the verdict constraint (if any)."""

    messages: list[dict]
    sampling: SamplingConfig
    verdict: VerdictSpec | None = None


class EngineRunner:
    """One engine behind a lock (engines are not thread-safe), with its failure count."""

    def __init__(self, engine: Engine, retry_after_s: float) -> None:
        self.engine = engine
        self.retry_after_s = retry_after_s
        self._lock = threading.Lock()
        self._failures = 0
        self._last_failure: str | None = None

    def generate(self, jobs: Sequence[Job]) -> list[RequestOutput | GuardError]:
        """Run jobs on the engine, one call per distinct sampling setting. A failing call is retried
        job by job, so one bad conversation fails alone; failures come back as GuardError values."""
        results: list[RequestOutput | GuardError | None] = [None] * len(jobs)
        groups: dict[SamplingConfig, list[int]] = defaultdict(list)
        for i, job in enumerate(jobs):
            groups[job.sampling].append(i)
        with self._lock:
            for sampling, indices in groups.items():
                self._run_group(jobs, sampling, indices, results)
        return results  # type: ignore[return-value]

    def _run_group(self, jobs, sampling, indices, results) -> None:
        verdicts = [jobs[i].verdict for i in indices]
        requests = [jobs[i].messages for i in indices]
        try:
            if any(v is not None for v in verdicts):
                outputs = self.engine.generate(requests, sampling, verdicts)
            else:
                outputs = self.engine.generate(requests, sampling)
            if len(outputs) != len(indices):
                raise RuntimeError(f"engine returned {len(outputs)} outputs for {len(indices)} requests")
        except Exception as exc:  # noqa: BLE001 - classified below; never propagated to the client raw
            if len(indices) > 1:
                for i in indices:
                    self._run_group(jobs, sampling, [i], results)
                return
            results[indices[0]] = self._classify(exc)
            return
        self._failures = 0
        for i, out in zip(indices, outputs):
            results[i] = out

    async def generate_async(self, job: Job) -> RequestOutput | GuardError:
        """One job on an asynchronous engine (`AsyncEngine.generate_one`: vLLM's AsyncLLM batches continuously)."""
        try:
            if job.verdict is not None:
                output = await self.engine.generate_one(job.messages, job.sampling, job.verdict)  # type: ignore[attr-defined]
            else:
                output = await self.engine.generate_one(job.messages, job.sampling)  # type: ignore[attr-defined]
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - classified, never propagated raw
            return self._classify(exc)
        self._failures = 0
        return output

    def _classify(self, exc: Exception) -> GuardError:
        text = str(exc)
        lowered = text.lower()
        if isinstance(exc, ValueError) and ("maximum model length" in lowered or "too long" in lowered or "max_model_len" in lowered):
            return PayloadTooLarge(f"input too long for the model: {text[:300]}", "messages")
        if template_refused(exc):  # e.g. a `tool` turn for a template without one: not the engine's failure
            return InvalidInput(f"the model's chat template refuses these messages: {text[:300]}", "messages")
        self._failures += 1
        self._last_failure = f"{type(exc).__name__}: {text[:300]}"
        if type(exc).__name__ == "EngineDeadError":
            self._failures = MAX_ENGINE_FAILURES
        log.error("engine failure %d: %s", self._failures, self._last_failure)
        return EngineUnavailable("the guard engine failed; retry later", self.retry_after_s)

    @property
    def healthy(self) -> bool:
        return self._failures < MAX_ENGINE_FAILURES and not getattr(self.engine, "dead", False)

    def check_health(self) -> None:
        """Raise when the engine keeps failing: Serve then replaces the replica."""
        if not self.healthy:
            raise RuntimeError(f"engine unhealthy after {self._failures} failures; last: {self._last_failure}")

    def close(self) -> None:
        self.engine.close()


def template_refused(exc: BaseException | None) -> bool:
    """Whether a chat template refused the messages: jinja2's TemplateError (its `raise_exception`), also
    when an engine wraps it (vLLM raises ValueError from it)."""
    while exc is not None:
        if type(exc).__module__.startswith("jinja2"):
            return True
        exc = exc.__cause__
    return False


def raise_first_error(outputs: Sequence[RequestOutput | GuardError]) -> list[RequestOutput]:
    for out in outputs:
        if isinstance(out, GuardError):
            raise out
    return list(outputs)  # type: ignore[arg-type]


