"""`OpenAIChatEngine`: any OpenAI-compatible `/v1/chat/completions` server (vllm serve, NIM, DeepSeek API).

Async httpx under the hood (bounded concurrency with a semaphore), driven from the sync
`generate` of the `Engine` interface; `agenerate` is there for async callers. Transient
failures (429, 5xx, 408, timeouts, connection errors) are retried with exponential backoff
and jitter, honouring Retry-After; other 4xx fail at once with the server's message.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import logging
import os
import random
import time
from typing import Any, Awaitable, Callable, Coroutine, Sequence, TypeVar

import httpx

from reasonguard.engines.base import Generation, Messages, RequestOutput, SamplingConfig

log = logging.getLogger(__name__)

T = TypeVar("T")
API_KEY_ENVS = ("OPENAI_API_KEY", "REASONGUARD_TEACHER_API_KEY")
BODY_EXCERPT_CHARS = 500


class OpenAIEngineError(RuntimeError):
    """A chat completion that failed for good: `status` is the last HTTP status (None: timeout/connection)."""

    def __init__(self, message: str, status: int | None = None, body: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


def chat_completions_url(base_url: str) -> str:
    """`http://h:p`, `http://h:p/`, `http://h:p/v1` -> `http://h:p/v1/chat/completions`."""
    base = base_url.rstrip("/")
    if base.endswith("/chat/completions"):
        return base
    return f"{base}/chat/completions" if base.endswith("/v1") else f"{base}/v1/chat/completions"


def is_retryable(status: int) -> bool:
    return status in (408, 429) or 500 <= status <= 599


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: a number, or an HTTP date (seconds from now); None when absent or odd."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, also when this thread already runs an event
    loop (Jupyter, an async server): then it runs on a fresh loop in a worker thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="openai-engine") as pool:
        return pool.submit(asyncio.run, coro).result()


def split_tokens(total: int, texts: Sequence[str]) -> list[int]:
    """Share a response's completion_tokens among its choices by text length (largest remainder).

    OpenAI-style `usage` is summed over the n choices; this is an estimate used only when
    neither per-choice logprobs nor a single choice give the exact count."""
    weights = [max(len(t), 1) for t in texts]
    raw = [total * w / sum(weights) for w in weights]
    counts = [int(r) for r in raw]
    for i in sorted(range(len(raw)), key=lambda i: counts[i] - raw[i])[: total - sum(counts)]:
        counts[i] += 1
    return counts


def with_reasoning(content: str | None, reasoning: str | None) -> str:
    """Reasoning returned apart from the content (`reasoning_content` / `reasoning`) goes back in
    front as a think block, the way the verdict parser expects it."""
    content = content or ""
    if not reasoning or "<think>" in content.lower():
        return content
    return f"<think>\n{reasoning.strip()}\n</think>\n\n{content.lstrip()}"


def choice_logprobs(choice: dict) -> tuple[dict[str, float], ...] | None:
    """OpenAI `logprobs.content` -> per token {text: logprob}: the top candidates plus the chosen token."""
    content = (choice.get("logprobs") or {}).get("content")
    if content is None:
        return None
    out = []
    for pos in content:
        cands = sorted(pos.get("top_logprobs") or [], key=lambda c: -c["logprob"])
        entry: dict[str, float] = {}
        for cand in [*cands, pos]:
            entry.setdefault(cand["token"], float(cand["logprob"]))
        out.append(entry)
    return tuple(out)


class OpenAIChatEngine:
    """Chat completions over HTTP behind the `Engine` interface.

    - `latency_s` is per request: its wall time including retries and extra calls.
    - n > 1 is sent as `n`; if the server rejects it (400/422) the engine falls back, for the rest
      of its life, to n single-sample calls (seeds seed, seed+1, ... when a seed is given); if the
      server returns fewer choices than asked, the rest come from single-sample calls.
    - temperature 0 (greedy) asks for one sample and repeats it n times (vLLM rejects n > 1 then).
    - `output_tokens` is exact with logprobs or n == 1, else an estimate (see `split_tokens`).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        *,
        max_concurrency: int = 8,
        timeout_s: float = 120.0,
        max_retries: int = 4,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        retry_after_max_s: float = 120.0,
        extra_body: dict[str, Any] | None = None,
        model_id: str | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        """`sleep` is how a retry waits (default asyncio.sleep); tests pass a recorder instead of a clock."""
        if max_concurrency < 1 or max_retries < 0 or timeout_s <= 0 or backoff_base_s < 0:
            raise ValueError("need max_concurrency >= 1, max_retries >= 0, timeout_s > 0, backoff_base_s >= 0")
        self.url = chat_completions_url(base_url)
        self.model = model
        self.model_id = model_id or model
        self.max_concurrency = max_concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.retry_after_max_s = retry_after_max_s
        self.extra_body = dict(extra_body or {})
        self._sleep = sleep or asyncio.sleep
        key = api_key or next((os.environ[e] for e in API_KEY_ENVS if os.environ.get(e)), None)
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.n_supported = True

    def __repr__(self) -> str:  # no key in reprs or logs
        return f"OpenAIChatEngine(url={self.url!r}, model={self.model!r})"

    def generate(self, requests: Sequence[Messages], sampling: SamplingConfig, verdicts=None) -> list[RequestOutput]:
        """`verdicts` is accepted and not applied: a remote server decodes freely (the parser
        counts what fails)."""
        return run_sync(self.agenerate(requests, sampling))

    async def agenerate(self, requests: Sequence[Messages], sampling: SamplingConfig) -> list[RequestOutput]:
        """The async form of `generate`; at most `max_concurrency` HTTP calls in flight."""
        sem = asyncio.Semaphore(self.max_concurrency)
        limits = httpx.Limits(max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency)
        async with httpx.AsyncClient(headers=self._headers, timeout=self.timeout_s, limits=limits) as client:
            tasks = [asyncio.create_task(self._request(client, sem, list(m), sampling)) for m in requests]
            try:
                return list(await asyncio.gather(*tasks))
            except BaseException:  # one failed for good: stop the others before the client closes
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise

    def close(self) -> None:
        """Nothing to free: each `generate` call opens and closes its own HTTP client."""

    async def _request(
        self, client: httpx.AsyncClient, sem: asyncio.Semaphore, messages: Messages, sampling: SamplingConfig
    ) -> RequestOutput:
        start = time.perf_counter()
        want = 1 if sampling.temperature == 0 else sampling.n
        gens: list[Generation] = []
        prompt_tokens = 0
        rejected_n = None
        if want > 1 and self.n_supported:
            try:
                gens, prompt_tokens = await self._call(client, sem, messages, sampling, n=want, seed=sampling.seed)
            except OpenAIEngineError as exc:
                if exc.status not in (400, 422):
                    raise
                rejected_n = exc
        missing = want - len(gens)
        if missing > 0:
            seeds = [None if sampling.seed is None else sampling.seed + len(gens) + i for i in range(missing)]
            singles = await asyncio.gather(*(self._call(client, sem, messages, sampling, n=1, seed=s) for s in seeds))
            gens += [g for got, _ in singles for g in got[:1]]
            prompt_tokens = prompt_tokens or singles[0][1]
            if rejected_n is not None and self.n_supported:  # the single calls worked: it was n the server refused
                self.n_supported = False
                log.warning("%s rejected n=%d (HTTP %s); single-sample calls from now on", self.url, want, rejected_n.status)
        gens = gens[:want] * (sampling.n // want)
        return RequestOutput(generations=tuple(gens), prompt_tokens=prompt_tokens, latency_s=time.perf_counter() - start)

    def _payload(self, messages: Messages, sampling: SamplingConfig, n: int, seed: int | None) -> dict:
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "max_tokens": sampling.max_tokens,
            "temperature": sampling.temperature,
            "top_p": 1.0 if sampling.temperature == 0 else sampling.top_p,
        }
        if n > 1:
            payload["n"] = n
        if seed is not None:
            payload["seed"] = seed
        if sampling.logprobs is not None:
            payload["logprobs"] = True
            payload["top_logprobs"] = sampling.logprobs
        return {**payload, **self.extra_body}

    async def _call(
        self, client: httpx.AsyncClient, sem: asyncio.Semaphore, messages: Messages, sampling: SamplingConfig,
        n: int, seed: int | None,
    ) -> tuple[list[Generation], int]:
        """One chat completion -> (generations, prompt_tokens)."""
        body = await self._post(client, sem, self._payload(messages, sampling, n, seed))
        choices = sorted(body.get("choices") or [], key=lambda c: c.get("index", 0))
        if not choices:
            raise OpenAIEngineError(f"POST {self.url} returned no choices: {str(body)[:BODY_EXCERPT_CHARS]}", 200, str(body))
        usage = body.get("usage") or {}
        texts = [with_reasoning((c.get("message") or {}).get("content"), _reasoning_of(c)) for c in choices]
        logprobs = [choice_logprobs(c) for c in choices]
        total = int(usage.get("completion_tokens") or 0)
        shares = [total] if len(choices) == 1 else split_tokens(total, texts)
        gens = [
            Generation(text=t, output_tokens=len(lp) if lp is not None else share, finish_reason=c.get("finish_reason"), logprobs=lp)
            for c, t, lp, share in zip(choices, texts, logprobs, shares)
        ]
        return gens, int(usage.get("prompt_tokens") or 0)

    async def _post(self, client: httpx.AsyncClient, sem: asyncio.Semaphore, payload: dict) -> dict:
        """POST with retries; returns the decoded JSON body or raises OpenAIEngineError."""
        attempts = self.max_retries + 1
        for attempt in range(attempts):
            status, body, retry_after = None, None, None
            try:
                async with sem:
                    async with asyncio.timeout(self.timeout_s):  # a whole-attempt deadline, not per socket read
                        resp = await client.post(self.url, json=payload)
            except (TimeoutError, httpx.TimeoutException) as exc:
                failure = f"timed out after {self.timeout_s:g}s ({type(exc).__name__})"
            except httpx.TransportError as exc:
                failure = f"connection error ({type(exc).__name__}: {exc})"
            else:
                status, body = resp.status_code, resp.text
                if 200 <= status < 300:
                    try:
                        return resp.json()
                    except ValueError:
                        msg = f"POST {self.url}: HTTP {status} with a body that is not JSON: {_excerpt(body)}"
                        raise OpenAIEngineError(msg, status, body) from None
                if not is_retryable(status):
                    raise OpenAIEngineError(f"POST {self.url} failed: HTTP {status} (not retried): {_excerpt(body)}", status, body)
                failure = f"HTTP {status}: {_excerpt(body)}"
                retry_after = parse_retry_after(resp.headers.get("retry-after"))
            if attempt == attempts - 1:
                raise OpenAIEngineError(f"POST {self.url} failed after {attempts} attempts; last error: {failure}", status, body)
            delay = self._delay(attempt, retry_after)
            log.warning("POST %s: %s; retry %d/%d in %.2fs", self.url, failure, attempt + 1, self.max_retries, delay)
            await self._sleep(delay)
        raise AssertionError("unreachable")

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Retry-After when given (never earlier; +0-10% jitter; capped), else base * 2^attempt with
        equal jitter (half fixed, half random), capped at backoff_max_s."""
        if retry_after is not None:
            return min(retry_after * (1 + random.uniform(0, 0.1)), self.retry_after_max_s)
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2**attempt)
        return ceiling / 2 + random.uniform(0, ceiling / 2)


def _reasoning_of(choice: dict) -> str | None:
    message = choice.get("message") or {}
    return message.get("reasoning_content") or message.get("reasoning")


def _excerpt(body: str | None) -> str:
    body = (body or "").strip().replace("\n", " ")
    return body if len(body) <= BODY_EXCERPT_CHARS else body[:BODY_EXCERPT_CHARS] + "..."
