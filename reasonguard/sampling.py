"""`SamplingConfig`: how one engine call decodes. Pure, so configs, engines and pipelines share it
without importing one another (the configs' `SamplingSettings.to_sampling` builds it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SamplingConfig:
    """Decoding settings. Guard defaults follow the paper: temperature 0.6, top-p 0.95, 400 new tokens."""

    n: int = 1
    temperature: float = 0.6
    top_p: float = 0.95
    max_tokens: int = 400
    seed: int | None = None
    logprobs: int | None = None  # top-k log-probabilities per generated token, when wanted

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError("n must be >= 1")
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        if self.max_tokens < 1:
            raise ValueError("max_tokens must be >= 1")
