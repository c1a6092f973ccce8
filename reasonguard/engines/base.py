"""The engine interface: a batch of chat requests in, generations out.

Every inference path (distillation teacher, guard predictions, the Serve replica) talks to
an engine through this interface, so the logic around it is tested with `FakeEngine` and
each real engine (vLLM, transformers, OpenAI-compatible HTTP) is tested for real.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence, runtime_checkable

from reasonguard.decoding import VerdictScores, VerdictSpec
from reasonguard.sampling import SamplingConfig  # noqa: F401 - part of the engine interface

Messages = list[dict]  # OpenAI-style [{"role": ..., "content": ...}]


@dataclass(frozen=True)
class Generation:
    """One sampled completion."""

    text: str
    output_tokens: int
    finish_reason: str | None = None  # "stop", "length", ...
    # Per generated token: {token_text: logprob} for the top-k candidates (when requested).
    logprobs: tuple[dict[str, float], ...] | None = None
    # Set when the request was decoded under the verdict constraint (reasonguard.decoding):
    # P(harmful) read at the verdict decisions, and whether the budget closed the reasoning.
    verdict_scores: VerdictScores | None = None
    closed_by_budget: bool = False


@dataclass(frozen=True)
class RequestOutput:
    """All samples for one request, plus its prompt size and wall time."""

    generations: tuple[Generation, ...]
    prompt_tokens: int = 0
    latency_s: float = 0.0


@runtime_checkable
class Engine(Protocol):
    model_id: str

    def generate(
        self, requests: Sequence[Messages], sampling: SamplingConfig, verdicts: Sequence[VerdictSpec | None] | None = None
    ) -> list[RequestOutput]:
        """One `RequestOutput` per request, in order, each with `sampling.n` generations.

        `verdicts` (one per request, or None) asks for verdict-safe decoding of those requests
        (reasonguard.decoding); engines that cannot constrain decoding (a remote HTTP server)
        generate freely and the parser counts what fails."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class AsyncEngine(Protocol):
    """An engine that schedules conversations itself (vLLM's AsyncLLM): one awaitable call per
    conversation, which joins the running batch at the next step. Serve awaits it directly instead
    of batching calls to `generate`."""

    model_id: str

    async def generate_one(self, messages: Messages, sampling: SamplingConfig, verdict: VerdictSpec | None = None) -> RequestOutput: ...

    def close(self) -> None: ...


@dataclass
class FakeEngine:
    """A scripted engine for unit tests of the logic around engines (never a stand-in for a real one)."""

    respond: Callable[[Messages, int], str]
    model_id: str = "fake"
    calls: list[int] = field(default_factory=list)

    def generate(self, requests: Sequence[Messages], sampling: SamplingConfig, verdicts=None) -> list[RequestOutput]:
        self.calls.append(len(requests))
        outputs = []
        for messages in requests:
            gens = tuple(
                Generation(text=(t := self.respond(messages, i)), output_tokens=len(t.split()), finish_reason="stop")
                for i in range(sampling.n)
            )
            outputs.append(RequestOutput(generations=gens, prompt_tokens=sum(len(m["content"].split()) for m in messages)))
        return outputs

    def close(self) -> None:
        pass
