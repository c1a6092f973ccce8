"""`AsyncVLLMEngine`: vLLM's AsyncLLM behind the engine interface (`AsyncEngine`): continuous
batching across requests, for a Serve replica.

`VLLMEngine` runs whole batches (`LLM.chat`): a conversation that arrives while a batch decodes
waits for all of it. AsyncLLM schedules per step, so each conversation joins the running batch
at the next step and leaves when done. Same prompts as `LLM.chat` (the chat template rendered
without extra special tokens), same sampling and log-probability conversion as `VLLMEngine`.
vLLM is imported in `__init__` only.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import OrderedDict
from typing import Any, Sequence

from reasonguard.decoding import VerdictSpec
from reasonguard.engines.base import Messages, RequestOutput, SamplingConfig
from reasonguard.engines.vllm_engine import VLLMEngine, _cuda_available, engine_args

log = logging.getLogger(__name__)
RENDERED_KEPT = 256  # prompts between a request's token count and its generate: at least the requests in flight


class AsyncVLLMEngine:
    """One AsyncLLM; `await generate_one(messages, sampling)` per conversation."""

    def __init__(self, model: str, *, model_id: str | None = None, **settings: Any) -> None:
        """`settings`: as `VLLMEngine` (reasonguard.engines.vllm_engine.engine_args), the same vLLM settings."""
        self.model_id = model_id or model
        self.on_cpu = not _cuda_available()
        from transformers import AutoTokenizer
        from vllm import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        from reasonguard.engines.vocab import load_vocabulary

        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self._rendered: OrderedDict[str, list[int]] = OrderedDict()
        self.vocab = load_vocabulary(model)
        kwargs = engine_args(model, on_gpu=not self.on_cpu, **settings)
        args = AsyncEngineArgs(model=model, disable_log_stats=True, **kwargs)
        log.info("starting vLLM AsyncLLM for %s (cpu=%s, dtype=%s)", model, self.on_cpu, kwargs["dtype"])
        self._llm = AsyncLLM.from_engine_args(args)

    def prompt_ids(self, messages: Messages) -> list[int]:
        """Token ids of the rendered chat prompt, as LLM.chat builds them. The last few are kept: Serve
        counts a request's prompt tokens (the context check) and then generates it, one rendering for both."""
        import json

        key = json.dumps(list(messages), sort_keys=True, ensure_ascii=False, default=str)
        ids = self._rendered.pop(key, None)
        if ids is None:
            text = self.tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)
            ids = self.tokenizer(text, add_special_tokens=False).input_ids
        self._rendered[key] = ids
        while len(self._rendered) > RENDERED_KEPT:
            self._rendered.popitem(last=False)
        return ids

    def count_tokens(self, messages: Messages) -> int:
        return len(self.prompt_ids(messages))

    async def generate_one(self, messages: Messages, sampling: SamplingConfig, verdict: VerdictSpec | None = None) -> RequestOutput:
        """One conversation; cancelling the caller aborts it inside vLLM. `verdict` turns the
        verdict constraint on (reasonguard.decoding)."""
        ids = self.prompt_ids(messages)
        params = VLLMEngine.sampling_params(self, sampling, verdict)
        start = time.perf_counter()
        final = None
        async for out in self._llm.generate({"prompt_token_ids": ids}, params, request_id=uuid.uuid4().hex):
            final = out
        if final is None:
            raise RuntimeError("vLLM returned no output")
        gens = tuple(VLLMEngine._generation(c, sampling, self.vocab, verdict) for c in final.outputs)
        if len(gens) < sampling.n:  # greedy: one sample stands for all n (as VLLMEngine)
            gens = gens * sampling.n
        return RequestOutput(generations=gens, prompt_tokens=len(ids), latency_s=time.perf_counter() - start)

    def generate(self, requests: Sequence[Messages], sampling: SamplingConfig, verdicts=None) -> list[RequestOutput]:
        raise NotImplementedError("AsyncVLLMEngine is asynchronous: await generate_one() per conversation")

    @property
    def dead(self) -> bool:
        return bool(getattr(self._llm, "errored", False))

    def close(self) -> None:
        llm = self.__dict__.pop("_llm", None)
        if llm is not None:
            try:
                llm.shutdown()
            except Exception as exc:  # noqa: BLE001 - best effort
                log.debug("AsyncLLM shutdown: %s", exc)
