"""`TransformersEngine`: batched `model.generate` behind the `Engine` interface.

The fallback for machines without vLLM, and the simple GPU check path. torch and
transformers are imported in `__init__` only.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from typing import Sequence

from reasonguard.decoding import VerdictDecoder, VerdictSpec, VerdictVocabulary, replay, scores_from_logits
from reasonguard.engines.base import Generation, Messages, RequestOutput, SamplingConfig

log = logging.getLogger(__name__)


def _resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _resolve_dtype(dtype: str, device: str):
    """'auto': bfloat16 on a GPU that supports it (else float16), float32 on CPU (bf16 matmuls are
    slow on CPUs without AMX/AVX512-BF16)."""
    import torch

    if dtype != "auto":
        return getattr(torch, dtype)
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


class TransformersEngine:
    """Left-padded batched generation with the model's chat template.

    - Sampling draws from torch's RNG, forked and seeded from `SamplingConfig.seed` for the call
      (global RNG state is left untouched). Same seed, same requests, same batch_size -> same texts.
    - temperature 0 is greedy; its one sample is repeated n times.
    - Logprobs are from the raw model logits (as vLLM's default `raw_logprobs`): per generated
      token the top-k candidates plus the sampled token, {decoded text: logprob}.
    - Requests are sorted by prompt length before batching (less padding), results come back in order.
    - `latency_s` is the wall time of the batch the request ran in.
    """

    def __init__(self, model: str, device: str = "auto", dtype: str = "auto", batch_size: int = 16, model_id: str | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.model_id = model_id or model
        self.batch_size = batch_size
        self.device = _resolve_device(device)
        self.dtype = _resolve_dtype(dtype, self.device)
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(model, dtype=self.dtype).to(self.device).eval()
        self.eos_ids = self._eos_ids()
        self._torch = torch
        self.vocab = VerdictVocabulary.from_tokenizer(self.tokenizer, extra_stop_ids=self.eos_ids)

    def _eos_ids(self) -> set[int]:
        ids = self.model.generation_config.eos_token_id
        ids = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return ids

    def generate(self, requests: Sequence[Messages], sampling: SamplingConfig, verdicts: Sequence[VerdictSpec | None] | None = None) -> list[RequestOutput]:
        if not requests:
            return []
        specs = list(verdicts) if verdicts is not None else [None] * len(requests)
        if len(specs) != len(requests):
            raise ValueError(f"{len(specs)} verdict specs for {len(requests)} requests")
        for spec in specs:
            if spec is not None and sampling.max_tokens < self.vocab.min_max_tokens(spec):
                raise ValueError(f"max_tokens {sampling.max_tokens} cannot hold a {spec.mode} verdict (needs {self.vocab.min_max_tokens(spec)})")
        prompts = [self.tokenizer.apply_chat_template(list(m), add_generation_prompt=True, tokenize=False) for m in requests]
        lengths = [len(self.tokenizer(p, add_special_tokens=False).input_ids) for p in prompts]
        order = sorted(range(len(prompts)), key=lambda i: lengths[i])
        results: list[RequestOutput | None] = [None] * len(prompts)
        with self._seeded(sampling.seed):
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                outs = self._generate_batch([prompts[i] for i in idx], sampling, [specs[i] for i in idx])
                for i, out in zip(idx, outs, strict=True):
                    results[i] = out
        return results  # type: ignore[return-value]

    @contextlib.contextmanager
    def _seeded(self, seed: int | None):
        if seed is None:
            yield
            return
        devices = [self._torch.device(self.device).index or 0] if self.device.startswith("cuda") else []
        with self._torch.random.fork_rng(devices=devices):
            self._torch.manual_seed(seed)
            yield

    def _generation_config(self, sampling: SamplingConfig, greedy: bool, own_warpers: bool = False):
        from transformers import GenerationConfig

        # Explicit neutral values for greedy: unset (None) fields are filled from the checkpoint's
        # generation_config.json (ours says temperature 0.6), which transformers then warns about.
        # `own_warpers`: temperature and top-p run in our processor list, after the verdict
        # constraint, so that the constraint sees (and records) the raw logits.
        temp, top_p = (1.0, 1.0) if greedy or own_warpers else (sampling.temperature, sampling.top_p)
        return GenerationConfig(
            do_sample=not greedy,
            num_return_sequences=1 if greedy else sampling.n,
            max_new_tokens=sampling.max_tokens,
            eos_token_id=sorted(self.eos_ids),
            pad_token_id=self.tokenizer.pad_token_id,
            return_dict_in_generate=True,
            output_logits=sampling.logprobs is not None,
            temperature=temp,
            top_p=top_p,
            top_k=None if greedy else 0,  # sampling: no top-k cut (transformers' default is 50; vLLM/OpenAI have none)
        )

    def _generate_batch(self, prompts: list[str], sampling: SamplingConfig, specs: list[VerdictSpec | None]) -> list[RequestOutput]:
        from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

        torch = self._torch
        greedy = sampling.temperature == 0
        per_prompt = 1 if greedy else sampling.n  # generate returns rows prompt-major: [p0s0, p0s1, ..., p1s0, ...]
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        constrained = any(s is not None for s in specs)
        processors = LogitsProcessorList()
        verdict_proc = None
        if constrained:
            row_specs = [specs[r // per_prompt] for r in range(len(prompts) * per_prompt)]
            verdict_proc = VerdictLogitsProcessor(self.vocab, row_specs, sampling.max_tokens, enc.input_ids.shape[1])
            processors.append(verdict_proc)
            if not greedy:
                processors.append(TemperatureLogitsWarper(sampling.temperature))
                if sampling.top_p < 1:
                    processors.append(TopPLogitsWarper(sampling.top_p))
        start = time.perf_counter()
        with torch.inference_mode():
            out = self.model.generate(
                **enc, generation_config=self._generation_config(sampling, greedy, own_warpers=constrained),
                logits_processor=processors,
            )
        latency = time.perf_counter() - start
        new_tokens = out.sequences[:, enc.input_ids.shape[1] :].tolist()
        logprobs = None
        if sampling.logprobs is not None:
            logprobs = self._logprobs(out.logits, out.sequences[:, enc.input_ids.shape[1] :], sampling.logprobs)
        prompt_tokens = enc.attention_mask.sum(dim=1).tolist()
        results = []
        for p in range(len(prompts)):
            gens = tuple(
                self._generation(new_tokens[row], logprobs[row] if logprobs else None,
                                 specs[p], sampling.max_tokens, verdict_proc.recorded[row] if verdict_proc else None)
                for row in range(p * per_prompt, (p + 1) * per_prompt)
            )
            gens = gens * (sampling.n // per_prompt)  # greedy: the one sample stands for all n
            results.append(RequestOutput(generations=gens, prompt_tokens=int(prompt_tokens[p]), latency_s=latency))
        return results

    def _generation(self, tokens: list[int], logprobs: list[dict[str, float]] | None, spec: VerdictSpec | None = None,
                    max_tokens: int = 0, recorded: dict[int, dict[int, float]] | None = None) -> Generation:
        """Cut at the first eos (kept in the count, as vLLM counts it); what follows is padding."""
        stop = next((k for k, t in enumerate(tokens) if t in self.eos_ids), None)
        count = len(tokens) if stop is None else stop + 1
        finish = "stop" if stop is not None else "length"  # no eos: max_tokens (or the model's max length) reached
        text = self.tokenizer.decode(tokens[:count], skip_special_tokens=True)
        scores, by_budget = None, False
        if spec is not None:
            decoder = replay(self.vocab, spec, max_tokens, tokens[:count])
            steps = recorded or {}
            scores = scores_from_logits(decoder.branches, lambda step, token: steps.get(step, {}).get(token))
            by_budget = decoder.closed_by == "budget"
        return Generation(text=text, output_tokens=count, finish_reason=finish, logprobs=tuple(logprobs[:count]) if logprobs else None,
                          verdict_scores=scores, closed_by_budget=by_budget)

    def _logprobs(self, logits: tuple, new_tokens, k: int) -> list[list[dict[str, float]]]:
        """Per row, per step: {decoded token: logprob} for the top-k plus the chosen token.

        One step at a time: stacking all steps would hold rows x steps x vocab floats twice."""
        torch = self._torch
        rows: list[list[dict[str, float]]] = [[] for _ in range(new_tokens.shape[0])]
        for t, step in enumerate(logits):
            logp = torch.log_softmax(step.float(), dim=-1)
            chosen = new_tokens[:, t]
            chosen_lp = logp.gather(-1, chosen[:, None]).squeeze(-1).tolist()
            top_lp, top_ids = logp.topk(k, dim=-1) if k > 0 else (logp[:, :0], chosen[:, None][:, :0])
            top_lp, top_ids, chosen = top_lp.tolist(), top_ids.tolist(), chosen.tolist()
            for r, row in enumerate(rows):
                entry: dict[str, float] = {}
                for token_id, lp in zip(top_ids[r] + [chosen[r]], top_lp[r] + [chosen_lp[r]]):
                    entry.setdefault(self._decode_cached(token_id), lp)  # best first: keep the higher one
                row.append(entry)
        return rows

    def _decode_cached(self, token_id: int) -> str:
        cache = self.__dict__.setdefault("_decoded", {})
        if token_id not in cache:
            cache[token_id] = self.tokenizer.decode([token_id])
        return cache[token_id]

    def close(self) -> None:
        """Drop the model (best effort; idempotent)."""
        if self.__dict__.pop("model", None) is None:
            return
        gc.collect()
        if self.device.startswith("cuda"):
            self._torch.cuda.empty_cache()

    def __enter__(self) -> "TransformersEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class VerdictLogitsProcessor:
    """The verdict constraint for `model.generate`: one `VerdictDecoder` per output row. Runs first
    in the processor list, so at each decision it records the raw log-probabilities of the two
    verdict tokens (`recorded[row][step]`) before masking everything else."""

    def __init__(self, vocab: VerdictVocabulary, row_specs: list[VerdictSpec | None], max_tokens: int, prompt_len: int):
        self.vocab = vocab
        self.decoders = [VerdictDecoder(vocab, s, max_tokens) if s is not None else None for s in row_specs]
        self.prompt_len = prompt_len
        self.recorded: list[dict[int, dict[int, float]]] = [{} for _ in row_specs]
        self._stop = sorted(vocab.stop_ids)

    def __call__(self, input_ids, scores):
        import torch

        for row, decoder in enumerate(self.decoders):
            if decoder is None:
                continue
            for token in input_ids[row, self.prompt_len + decoder.n :].tolist():
                decoder.advance(token)
            allowed = decoder.allowed()
            if allowed is not None:
                if len(allowed) > 1:
                    logp = torch.log_softmax(scores[row].float(), dim=-1)
                    self.recorded[row][decoder.n] = {t: float(logp[t]) for t in allowed}
                keep = scores[row, allowed].clone()
                scores[row] = float("-inf")
                scores[row, allowed] = keep
            elif decoder.bans_stop:
                scores[row, self._stop] = float("-inf")
            elif decoder.bans_markup:
                scores[row, list(decoder.vocab.category_banned_ids())] = float("-inf")
        return scores
