"""Serve test helpers: a scripted engine with crafted log-probabilities (for the logic around the
engine; the real engine runs in test_serve_ray.py), and server/app factories."""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass, field
from typing import Callable

import pytest

from reasonguard.engines.base import Generation, RequestOutput, SamplingConfig


def tokens_of(text: str) -> list[str]:
    """A toy tokenizer: words with their leading space, newlines and punctuation alone."""
    return re.findall(r"\s?[A-Za-z_]+|\n|\s|[^\sA-Za-z_]+", text)


def steps_for(text: str, p_harmful: dict[str, float] | None = None, k_noise: int = 1) -> tuple[dict[str, float], ...]:
    """Per-token candidates for `text`: the sampled token plus decoys, and at each harm word
    (`Prompt harm: X` -> key 'prompt', `Response harm: X` -> 'response') the first tokens of
    harmful / unharmful with the given P(harmful) among the two."""
    p_harmful = p_harmful or {}
    toks = tokens_of(text)
    out, pos, context = [], 0, ""
    for tok in toks:
        cands = {tok: math.log(0.9)}
        for j in range(k_noise):
            cands.setdefault(f"~decoy{j}", math.log(0.01))
        which = next((w for w in ("prompt", "response") if re.search(rf"{w} harm:\s*$", context, re.I)), None)
        if which in p_harmful and tok.strip().lower() in ("harmful", "unharmful"):
            p = p_harmful[which]
            lead = tok[: len(tok) - len(tok.lstrip())]
            cands = {lead + "harmful": math.log(max(p, 1e-9) * 0.8), lead + "unharmful": math.log(max(1 - p, 1e-9) * 0.8), "~x": math.log(0.2)}
        out.append(cands)
        context += tok
        pos += len(tok)
    return tuple(out)


@dataclass
class ScriptedEngine:
    """Implements the Engine interface; `respond(messages) -> (text, {which: P(harmful)})`."""

    respond: Callable[[list[dict]], tuple[str, dict[str, float]]]
    model_id: str = "scripted"
    calls: list[tuple[int, SamplingConfig]] = field(default_factory=list)
    seen: list[list[dict]] = field(default_factory=list)
    gate: threading.Event | None = None   # when set up, generate() waits for it (overload/timeout tests)
    fail_with: Exception | None = None
    closed: bool = False

    def generate(self, requests, sampling: SamplingConfig):
        self.calls.append((len(requests), sampling))
        if self.gate is not None:
            self.gate.wait(30)
        if self.fail_with is not None:
            raise self.fail_with
        outs = []
        for messages in requests:
            self.seen.append(list(messages))
            text, probs = self.respond(messages)
            toks = tokens_of(text)[: sampling.max_tokens]
            text = "".join(toks)
            steps = steps_for(text, probs) if sampling.logprobs else None
            gens = tuple(
                Generation(text=text, output_tokens=len(toks), finish_reason="length" if len(toks) == sampling.max_tokens else "stop", logprobs=steps)
                for _ in range(sampling.n)
            )
            outs.append(RequestOutput(generations=gens, prompt_tokens=sum(len(m["content"]) // 4 for m in messages)))
        return outs

    def close(self) -> None:
        self.closed = True


def verdict_text(prompt_harm="harmful", response_harm=None, reasoning=None, categories=None) -> str:
    """The guard's answer; `categories` (e.g. "S1") adds the categories line (an empty string: `None`)."""
    from reasonguard.verdict import format_output

    return format_output(prompt_harm, response_harm, reasoning, None if categories is None else
                         [c.strip() for c in categories.split(",") if c.strip()])


def keyword_guard(messages):
    from reasonguard.prompts import asks_categories

    """A scripted guard: 'harmful' when the judged prompt mentions 'bomb'; P(harmful) 0.83 or 0.12."""
    content = messages[-1]["content"]
    human = content.split("Human user:\n", 1)[1].split("\n\nAI assistant:", 1)[0]
    response = content.split("AI assistant:\n", 1)[1].split("\n\n", 1)[0]
    harmful = "bomb" in human.lower()
    think = content.rstrip().endswith("/think")
    resp = None if response == "None" else ("harmful" if "detonator" in response else "unharmful")
    asked = asks_categories(content)  # like a trained guard: the line only when the prompt asks for it
    text = verdict_text("harmful" if harmful else "unharmful", resp, "Because." if think else None,
                        ("S1" if harmful else "") if asked else None)
    probs = {"prompt": 0.83 if harmful else 0.12}
    if resp is not None:
        probs["response"] = 0.91 if resp == "harmful" else 0.07
    return text, probs


def make_config(**overrides):
    from reasonguard.config.serve import ServeConfig

    base = {"engine": {"kind": "vllm", "model": "scripted", "max_model_len": 4096}, "replica": {"num_replicas": 1}}
    for key, value in overrides.items():
        node = base
        *parents, leaf = key.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return ServeConfig.model_validate(base)


@pytest.fixture
def engine():
    return ScriptedEngine(keyword_guard)
