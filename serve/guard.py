"""`GuardServer`: the guard's request logic around an engine, with no Ray and no HTTP in it.

Requests become engine jobs (`plan_*`: limits, prompt rendering, sampling), jobs run in engine
batches (serve.engine_runner: grouped by sampling settings, one failing conversation never fails the
others; serve.chat holds the OpenAI chat helpers), and outputs become responses (`finish_*`: verdict parsing, P(harmful), the threshold
decision). The Serve deployment adds batching across requests, deadlines and metrics on top,
so everything here is unit-tested with a scripted engine and exercised for real under Serve.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import Callable, Sequence

from reasonguard.calibration import Calibration, find_calibration
from reasonguard.config.serve import ServeConfig
from reasonguard.decoding import VerdictSpec
from reasonguard.engines.base import Engine, RequestOutput, SamplingConfig
from reasonguard.policy import Policy, resolve_policy, text_policy
from reasonguard.categories import resolve_categories
from reasonguard.prompts import GuardInput, Mode, asks_categories, guard_messages, mode_of_prompt
from reasonguard.verdict import parse_verdict
from serve.chat import chat_turn, prompt_has_response
from serve.engine_runner import EngineRunner, Job, raise_first_error, template_refused
from serve.errors import GuardError, InvalidInput, ModelNotFound, PayloadTooLarge
from serve.schemas import (
    ChatChoice,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatMessageOut,
    Conversation,
    GuardBatchRequest,
    GuardBatchResponse,
    GuardOptions,
    GuardRequest,
    GuardResponse,
    GuardResult,
    Usage,
)
from serve.scoring import verdict_scores

log = logging.getLogger(__name__)

TokenCounter = Callable[[list[dict]], int]


@dataclass(frozen=True)
class GuardPlan:
    """A validated /v1/guard request, ready for the engine."""

    jobs: list[Job]
    ids: list[str | None]
    has_response: list[bool]
    policies: list[Policy]  # per conversation: the request's policy, or the conversation's system message
    mode: Mode
    threshold: float | None
    return_reasoning: bool
    timeout_s: float
    batch: bool
    categories: bool = False  # the prompts asked for the violated categories


@dataclass(frozen=True)
class ChatPlan:
    job: Job
    mode: str  # the guard prompt's own flag, or "other" for a non-guard prompt
    timeout_s: float


def _loc(batch: bool, index: int, field: str) -> str:
    return f"inputs[{index}].{field}" if batch else field


class GuardServer:
    """The guard behind any transport. `count_tokens` (chat messages -> prompt tokens) lets
    oversize prompts be refused with 413 before they reach the engine."""

    def __init__(self, engine: Engine, config: ServeConfig, count_tokens: TokenCounter | None = None) -> None:
        self.engine = engine
        self.config = config
        self.count_tokens = count_tokens
        self.model_name = config.model_name
        self.max_model_len = config.engine.max_model_len if config.engine.kind == "vllm" else None
        self.created = int(time.time())
        self.runner = EngineRunner(engine, config.replica.retry_after_s)
        # Verdict-safe decoding where the engine can constrain (it carries the verdict vocabulary).
        self.vocab = getattr(engine, "vocab", None)
        self.constrained = config.guard.decoding.constrained and self.vocab is not None
        self.calibration: Calibration | None = self._load_calibration(config)

    @staticmethod
    def _load_calibration(config: ServeConfig) -> Calibration | None:
        setting = config.guard.decoding.calibration
        if setting in (None, "none"):
            return None
        model_dir = None
        if config.engine.kind != "openai":
            from reasonguard.models import ModelUnavailableError, resolve_model

            try:
                model_dir = resolve_model(config.engine.model)
            except ModelUnavailableError:
                if setting == "auto":
                    return None
                raise
        calibration = find_calibration(setting, model_dir)
        if calibration is not None:
            log.info("calibrated scores: temperatures %s", calibration.temperatures)
        return calibration

    def verdict_spec(self, mode: str, has_response: bool, categories: bool = False) -> VerdictSpec | None:
        if not self.constrained or mode not in ("think", "no_think"):
            return None
        return VerdictSpec(mode, has_response, categories)  # type: ignore[arg-type]

    def _sampling_for(self, sampling: SamplingConfig, spec: VerdictSpec | None) -> SamplingConfig:
        """Room for the whole constrained verdict (a score-only or tight budget is raised to it)."""
        if spec is None or self.vocab is None:
            return sampling
        need = self.vocab.min_max_tokens(spec)
        if sampling.max_tokens >= need:
            return sampling
        import dataclasses

        return dataclasses.replace(sampling, max_tokens=need)

    # ---------------------------------------------------------------- /v1/guard

    def plan_guard(self, request: GuardRequest | GuardBatchRequest) -> GuardPlan:
        """Limits, policy, prompts and sampling for a guard request (raises GuardError)."""
        limits, defaults = self.config.limits, self.config.guard
        batch = isinstance(request, GuardBatchRequest)
        conversations: Sequence[Conversation] = request.inputs if batch else [request]
        if len(conversations) > limits.max_batch_items:
            raise PayloadTooLarge(
                f"{len(conversations)} conversations in one request; the limit is {limits.max_batch_items}", "inputs"
            )
        mode: Mode = "no_think" if request.score_only else (request.mode or defaults.mode)
        try:
            policy = resolve_policy(request.policy if request.policy is not None else defaults.policy)
        except ValueError as exc:
            raise InvalidInput(str(exc), "policy") from None
        base_sampling = self._guard_sampling(request, mode)
        asked = not request.score_only and (request.categories if request.categories is not None else defaults.categories)
        jobs, has_response, policies = [], [], []
        for i, conv in enumerate(conversations):
            inp = self._guard_input(conv, batch, i)
            conv_policy = self._system_policy(conv, request, batch, i) or policy
            policies.append(conv_policy)
            messages = guard_messages(inp, mode, conv_policy, asked)
            spec = self.verdict_spec(mode, inp.response is not None, asked)
            sampling = self._sampling_for(base_sampling, spec)
            self._check_prompt_tokens(messages, sampling.max_tokens, _loc(batch, i, "messages" if conv.messages else "prompt"))
            jobs.append(Job(messages, sampling, spec))
            has_response.append(inp.response is not None)
        return GuardPlan(
            jobs=jobs, ids=[c.id for c in conversations], has_response=has_response, policies=policies, mode=mode,
            threshold=request.threshold if request.threshold is not None else defaults.threshold,
            return_reasoning=request.return_reasoning, timeout_s=self.timeout_for(request.timeout_s), batch=batch,
            categories=asked,
        )

    def _guard_sampling(self, options: GuardOptions, mode: Mode) -> SamplingConfig:
        defaults, limits = self.config.guard, self.config.limits
        budget = options.reasoning_budget
        if budget is not None and budget > limits.max_reasoning_tokens:  # in any mode: the schema states the bound
            raise InvalidInput(
                f"reasoning_budget {budget} is above this server's limit of {limits.max_reasoning_tokens}", "reasoning_budget"
            )
        if options.score_only:
            max_tokens = defaults.score_only_max_tokens
        elif mode == "think":
            max_tokens = budget + defaults.verdict_tokens if budget is not None else defaults.think_max_tokens
        else:
            max_tokens = defaults.no_think_max_tokens
        temperature = options.temperature if options.temperature is not None else defaults.temperature
        return SamplingConfig(
            n=1, temperature=temperature, top_p=defaults.top_p if temperature > 0 else 1.0, max_tokens=max_tokens,
            seed=options.seed if temperature > 0 else None,
            # The constrained engines read P(harmful) at the verdict decisions themselves; free
            # output is scored from the top-k candidates along the text (serve.scoring).
            logprobs=None if self.constrained else defaults.top_logprobs,
        )

    @staticmethod
    def _system_policy(conv: Conversation, request: GuardOptions, batch: bool, index: int) -> Policy | None:
        """A `system` message in `messages` is the conversation's policy (free text): used as such, never
        dropped. Together with an explicit `policy` it is ambiguous: 422."""
        if conv.messages is None:
            return None
        systems = [m.content for m in conv.messages if m.role == "system" and m.content.strip()]
        if not systems:
            return None
        if request.policy is not None:
            raise InvalidInput("a system message is read as the policy; give the policy either as 'policy' or as a "
                               "system message, not both", _loc(batch, index, "messages"))
        try:
            return text_policy("\n\n".join(systems))
        except ValueError as exc:
            raise InvalidInput(f"system message as policy: {exc}", _loc(batch, index, "messages")) from None

    def _guard_input(self, conv: Conversation, batch: bool, index: int) -> GuardInput:
        limit = self.config.limits.max_text_chars
        if conv.messages is not None:
            if len(conv.messages) > self.config.limits.max_messages:
                raise PayloadTooLarge(
                    f"{len(conv.messages)} messages; the limit is {self.config.limits.max_messages}", _loc(batch, index, "messages")
                )
            for j, message in enumerate(conv.messages):
                self._check_message_size(message.content or "", message.tool_calls, _loc(batch, index, f"messages[{j}]"))
            try:
                return GuardInput.from_messages([m.model_dump() for m in conv.messages])
            except ValueError as exc:  # the schema checks each message; this is the pure core's own guard
                raise InvalidInput(str(exc), _loc(batch, index, "messages")) from None
        for name in ("prompt", "response"):
            text = getattr(conv, name)
            if text is not None and len(text) > limit:
                raise PayloadTooLarge(f"{name} is {len(text)} characters; the limit is {limit}", _loc(batch, index, name))
        return GuardInput(prompt=conv.prompt, response=conv.response)

    def _check_message_size(self, text: str, tool_calls, where: str) -> None:
        """The text limit holds for a message's content and for each tool call's arguments."""
        limit = self.config.limits.max_text_chars
        if len(text) > limit:
            raise PayloadTooLarge(f"message content is {len(text)} characters; the limit is {limit}", f"{where}.content")
        for k, call in enumerate(tool_calls or ()):
            size = len(call.function.arguments)
            if size > limit:
                raise PayloadTooLarge(f"tool call arguments are {size} characters; the limit is {limit}",
                                      f"{where}.tool_calls[{k}].function.arguments")

    def finish_guard(self, plan: GuardPlan, outputs: Sequence[RequestOutput], latency_s: float) -> GuardResponse | GuardBatchResponse:
        results = [self._result(plan, i, out) for i, out in enumerate(outputs)]
        policy_name = "aegis2" if all(p.name == "aegis2" for p in plan.policies) else "custom"
        latency_ms = round(1000 * latency_s, 3)
        if not plan.batch:
            return GuardResponse(**results[0].model_dump(), model=self.model_name, mode=plan.mode, policy=policy_name, latency_ms=latency_ms)
        prompt_tokens = sum(r.usage.prompt_tokens for r in results)
        completion_tokens = sum(r.usage.completion_tokens for r in results)
        usage = Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, total_tokens=prompt_tokens + completion_tokens)
        return GuardBatchResponse(model=self.model_name, mode=plan.mode, policy=policy_name, results=results, usage=usage, latency_ms=latency_ms)

    def _result(self, plan: GuardPlan, index: int, output: RequestOutput) -> GuardResult:
        gen = output.generations[0]
        has_response = plan.has_response[index]
        verdict = parse_verdict(gen.text, expect_response=has_response)
        if gen.verdict_scores is not None:  # constrained: read at the verdict decisions
            scores = {"prompt": gen.verdict_scores.prompt, "response": gen.verdict_scores.response}
        else:
            scores = verdict_scores(gen.text, gen.logprobs)
        if not has_response:
            scores["response"] = None
        if self.calibration is not None:
            scores = {k: self.calibration.apply(k, v, plan.mode) for k, v in scores.items()}
        target = "response" if has_response else "prompt"
        score, label = scores[target], verdict.label(target)
        flag_reason = None
        if score is not None and plan.threshold is not None:
            flagged: bool | None = score >= plan.threshold
        elif label is not None:
            flagged = label == "harmful"
        else:
            flagged, flag_reason = self._missing_verdict(verdict.error)
        codes, names = resolve_categories(verdict.categories, plan.policies[index]) if plan.categories else ([], [])
        return GuardResult(
            id=plan.ids[index],
            prompt_harm=verdict.prompt_harm,
            response_harm=verdict.response_harm if has_response else None,
            score=score, prompt_score=scores["prompt"], response_score=scores["response"],
            threshold=plan.threshold, flagged=flagged, flag_reason=flag_reason, categories=names,
            category_codes=codes,
            calibrated=self.calibration is not None and score is not None, constrained=plan.jobs[index].verdict is not None,
            reasoning=verdict.reasoning if plan.return_reasoning and plan.mode == "think" else None,
            parsed_ok=verdict.parsed_ok, parse_error=verdict.error, finish_reason=gen.finish_reason,
            usage=Usage(prompt_tokens=output.prompt_tokens, completion_tokens=gen.output_tokens,
                        total_tokens=output.prompt_tokens + gen.output_tokens),
        )

    def _missing_verdict(self, error: str | None) -> tuple[bool | None, str]:
        """What `flagged` is when no verdict could be read: config `guard.on_missing_verdict`."""
        policy = self.config.guard.on_missing_verdict
        reason = f"no verdict could be read ({error or 'unparsed output'}); on_missing_verdict={policy}"
        return {"flag": True, "allow": False, "null": None}[policy], reason

    def guard(self, request: GuardRequest | GuardBatchRequest) -> GuardResponse | GuardBatchResponse:
        """Synchronous end to end (tests, scripts): plan, generate, finish."""
        start = time.perf_counter()
        plan = self.plan_guard(request)
        outputs = self.generate(plan.jobs)
        return self.finish_guard(plan, raise_first_error(outputs), time.perf_counter() - start)

    # ---------------------------------------------------------------- /v1/chat/completions

    def plan_chat(self, request: ChatCompletionRequest) -> ChatPlan:
        """An OpenAI chat request as one engine job; the messages go to the model unchanged."""
        limits, defaults = self.config.limits, self.config.guard
        if request.model not in (self.model_name, self.config.engine.model):
            raise ModelNotFound(f"model {request.model!r} is not served here; this server serves {self.model_name!r}", "model")
        if len(request.messages) > limits.max_messages:
            raise PayloadTooLarge(f"{len(request.messages)} messages; the limit is {limits.max_messages}", "messages")
        messages = []
        for i, m in enumerate(request.messages):
            self._check_message_size(m.text(), m.tool_calls, f"messages[{i}]")
            messages.append(chat_turn(m))
        if request.n > limits.max_choices:
            raise InvalidInput(f"n={request.n} is above this server's limit of {limits.max_choices}", "n")
        users = [m["content"] for m in messages if m["role"] == "user"]
        mode = (mode_of_prompt(users[-1]) if users else None) or "other"
        max_tokens = request.max_completion_tokens or request.max_tokens
        if max_tokens is None:
            max_tokens = defaults.think_max_tokens if mode == "think" else max(defaults.no_think_max_tokens, 64)
        if max_tokens > limits.max_completion_tokens:
            param = "max_completion_tokens" if request.max_completion_tokens else "max_tokens"
            raise InvalidInput(f"{param}={max_tokens} is above this server's limit of {limits.max_completion_tokens}", param)
        temperature = request.temperature if request.temperature is not None else defaults.temperature
        sampling = SamplingConfig(
            n=request.n, temperature=temperature, top_p=request.top_p or defaults.top_p, max_tokens=max_tokens,
            seed=request.seed,
        )
        spec = self.verdict_spec(mode, prompt_has_response(users[-1]), asks_categories(users[-1])) if users else None
        sampling = self._sampling_for(sampling, spec)
        self._check_prompt_tokens(messages, sampling.max_tokens, "messages")
        return ChatPlan(job=Job(messages, sampling, spec), mode=mode, timeout_s=self.timeout_for(None))

    def finish_chat(self, output: RequestOutput) -> ChatCompletionResponse:
        completion = sum(g.output_tokens for g in output.generations)
        return ChatCompletionResponse(
            id=f"chatcmpl-{uuid.uuid4().hex}",
            created=int(time.time()),
            model=self.model_name,
            choices=[
                ChatChoice(index=i, message=ChatMessageOut(content=g.text), finish_reason=g.finish_reason)
                for i, g in enumerate(output.generations)
            ],
            usage=Usage(prompt_tokens=output.prompt_tokens, completion_tokens=completion, total_tokens=output.prompt_tokens + completion),
        )

    def chat_completion(self, request: ChatCompletionRequest) -> ChatCompletionResponse:
        plan = self.plan_chat(request)
        return self.finish_chat(raise_first_error(self.generate([plan.job]))[0])

    # ---------------------------------------------------------------- engine

    def generate(self, jobs: Sequence[Job]) -> list[RequestOutput | GuardError]:
        """Run jobs on the engine (serve.engine_runner): failures come back as GuardError values."""
        return self.runner.generate(jobs)

    async def generate_async(self, job: Job) -> RequestOutput | GuardError:
        return await self.runner.generate_async(job)

    # ---------------------------------------------------------------- shared

    def _check_prompt_tokens(self, messages: list[dict], max_tokens: int, param: str) -> None:
        if self.count_tokens is None or self.max_model_len is None:
            return
        try:
            tokens = self.count_tokens(messages)
        except Exception as exc:  # noqa: BLE001 - a template's refusal is the input's fault; anything else propagates
            if not template_refused(exc):
                raise
            raise InvalidInput(f"the model's chat template refuses these messages: {str(exc)[:300]}", param) from None
        allowed = self.max_model_len - max_tokens
        if tokens > allowed:
            raise PayloadTooLarge(
                f"the rendered prompt is {tokens} tokens; with max_tokens {max_tokens} the model's context of "
                f"{self.max_model_len} tokens allows {max(allowed, 0)}", param,
            )

    def timeout_for(self, requested: float | None) -> float:
        t = self.config.timeouts
        return min(requested, t.max_request_s) if requested is not None else t.request_s

    @property
    def healthy(self) -> bool:
        return self.runner.healthy

    def check_health(self) -> None:
        """Raise when the engine keeps failing: Serve then replaces the replica."""
        self.runner.check_health()

    def close(self) -> None:
        self.runner.close()


def hf_token_counter(model_path: str) -> TokenCounter:
    """Prompt tokens of chat messages, counted the way vLLM's chat() renders them."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)

    def count(messages: list[dict]) -> int:
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return len(ids)

    return count
