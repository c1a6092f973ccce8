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

    def to_params(self, seed_offset: int = 0) -> dict:
        """The per-row `sampling_params` of the Ray Data stages (vLLM SamplingParams fields; the
        engine-actor stage reads them back with `from_params`). Sample k of an item: seed + k."""
        params = {"temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens}
        if self.seed is not None:
            params["seed"] = int(self.seed) + int(seed_offset)
        return params

    @classmethod
    def from_params(cls, params: dict) -> "SamplingConfig":
        """One sample with the fields `to_params` wrote (others, such as the verdict's, are the engine's)."""
        return cls(n=1, **{k: v for k, v in params.items() if k in ("temperature", "top_p", "max_tokens", "seed")})

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError("n must be >= 1")
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        if self.max_tokens < 1:
            raise ValueError("max_tokens must be >= 1")
