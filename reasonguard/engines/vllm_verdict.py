"""The verdict constraint as a vLLM V1 logits processor (reasonguard.decoding in the engine core).

Registered on every vLLM engine of ours by its fully-qualified name (`VERDICT_PROCESSOR`), so
the same class runs under `vllm.LLM`, AsyncLLM and `ray.data.llm`'s engine actors. It acts only
on requests whose `SamplingParams.extra_args` carry a `VerdictSpec`; other requests are untouched.
This module imports vLLM at the top: only vLLM loads it.
"""

from __future__ import annotations

import torch
from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

from reasonguard.decoding import VerdictDecoder, VerdictSpec
from reasonguard.engines.vocab import load_vocabulary


class VerdictLogitsProcessor(AdapterLogitsProcessor):
    def __init__(self, vllm_config, device: torch.device, is_pin_memory: bool):
        super().__init__(vllm_config, device, is_pin_memory)
        self.vocab = load_vocabulary(vllm_config.model_config.tokenizer)
        self._stop = torch.tensor(sorted(self.vocab.stop_ids), dtype=torch.long)

    def _category_banned(self, device):
        """The ids banned while categories are named, as one tensor per device (built once, not per step)."""
        cached = getattr(self, "_banned_by_device", None)
        if cached is None:
            cached = self._banned_by_device = {}
        if device not in cached:
            cached[device] = torch.tensor(self.vocab.category_banned_ids(), dtype=torch.long, device=device)
        return cached[device]

    def is_argmax_invariant(self) -> bool:
        return False  # it changes which token is most likely

    def new_req_logits_processor(self, params):
        spec = VerdictSpec.from_extra_args(params.extra_args)
        if spec is None:
            return None
        vocab, stop, max_tokens = self.vocab, self._stop, params.max_tokens
        state = {"decoder": VerdictDecoder(vocab, spec, max_tokens)}

        def constrain(output_ids: list[int], logits: torch.Tensor) -> torch.Tensor:
            decoder = state["decoder"]
            if len(output_ids) < decoder.n:  # the request was restarted: replay from scratch
                decoder = state["decoder"] = VerdictDecoder(vocab, spec, max_tokens)
            for token in output_ids[decoder.n :]:
                decoder.advance(token)
            allowed = decoder.allowed()
            if allowed is not None:
                index = torch.tensor(allowed, dtype=torch.long, device=logits.device)
                keep = logits.index_select(0, index)
                logits.fill_(float("-inf"))
                logits.index_copy_(0, index, keep)
            elif decoder.bans_stop:
                logits.index_fill_(0, stop.to(logits.device), float("-inf"))
            elif decoder.bans_markup:
                logits.index_fill_(0, self._category_banned(logits.device), float("-inf"))
            return logits

        return constrain
