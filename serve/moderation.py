"""The moderating proxy: an upstream LLM's answers, checked by the guard while they stream.

`/v1/chat/completions` for the upstream's model name (ModerationSettings) goes to the upstream; the
guard checks the prompt before the upstream is called and the response so far every N streamed
tokens and at sentence ends. `release: after_check` holds text back until a check has passed it (the
client never sees unchecked text); `immediate` sends text at once and cuts the stream at the first
harmful verdict. A cut ends the stream with finish_reason "content_filter" and a `moderation` object
saying why. The client going away closes the upstream request (nothing keeps generating).

`StreamModerator` is the pure part (when to check, what to release); `moderated_stream` and
`moderated_completion` drive an upstream over HTTP with a `check` function (the guard service's).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import AsyncIterator, Awaitable, Callable

from reasonguard.config.serve import ModerationSettings
from serve.errors import GuardError, InvalidInput

log = logging.getLogger(__name__)

_SENTENCE_END = re.compile(r"[.!?。！？][\"')\]]*\s*$|\n\s*$")
_TOKENISH = re.compile(r"\w+|[^\w\s]")
_GUARD_ROLES = ("user", "assistant", "tool")


class UpstreamError(GuardError):
    """The upstream LLM failed or refused the request (its status and message are passed on)."""

    status, kind = 502, "upstream_error"


@dataclass
class Verdict:
    """One guard check of the proxy: whether to stop, and what the client is told about it."""

    harmful: bool
    stage: str  # prompt | response
    prompt_harm: str | None = None
    response_harm: str | None = None
    score: float | None = None
    reason: str | None = None

    def to_json(self, **extra) -> dict:
        return {"stage": self.stage, "harmful": self.harmful, "prompt_harm": self.prompt_harm,
                "response_harm": self.response_harm, "score": self.score, "reason": self.reason, **extra}


Check = Callable[[list[dict], "str | None"], Awaitable[Verdict]]


@dataclass
class StreamModerator:
    """When to check a streaming response and which text may be released to the client."""

    every_tokens: int
    at_sentence_end: bool = True
    min_gap: int = 8
    hold_back: bool = True
    text: str = ""
    released: int = 0  # characters of `text` sent to the client
    tokens: int = 0
    since_check: int = 0
    checks: int = 0
    checked_tokens: list[int] = field(default_factory=list)

    def add(self, delta: str) -> tuple[bool, str]:
        """Take one streamed delta: (check now?, text to send now)."""
        self.text += delta
        self.tokens += 1
        self.since_check += 1
        due = self.since_check >= self.every_tokens or (
            self.at_sentence_end and self.since_check >= self.min_gap and bool(_SENTENCE_END.search(self.text)))
        return due, "" if self.hold_back else self._release()

    def passed(self) -> str:
        """A check passed the text so far: what may now be sent."""
        self.checks += 1
        self.checked_tokens.append(self.tokens)
        self.since_check = 0
        return self._release() if self.hold_back else ""

    def pending(self) -> bool:
        """Text not yet checked (the final check is due)."""
        return self.since_check > 0

    def _release(self) -> str:
        out = self.text[self.released:]
        self.released = len(self.text)
        return out


def guard_conversation(messages: list[dict]) -> list[dict]:
    """What the guard judges of the client's conversation: its user, assistant and tool turns. The
    client's system message instructs the upstream; it is not the guard's policy."""
    keep = ("role", "content", "tool_calls", "tool_call_id", "name")
    return [{k: v for k, v in m.items() if k in keep and v is not None} for m in messages
            if isinstance(m, dict) and m.get("role") in _GUARD_ROLES]


def check_request(body: dict) -> list[dict]:
    """The proxied request's messages, checked enough to be judged (the upstream checks the rest)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidInput("messages must be a non-empty list", "messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "developer", *_GUARD_ROLES):
            raise InvalidInput("each message needs a role: system, developer, user, assistant or tool", f"messages[{i}]")
        content = m.get("content")
        if content is not None and not isinstance(content, str):
            raise InvalidInput("content must be a string (text only through the moderating proxy)", f"messages[{i}].content")
    if not any(m.get("role") == "user" for m in messages):
        raise InvalidInput("the conversation needs a user turn", "messages")
    if "n" in body and body["n"] not in (None, 1):
        raise InvalidInput("n must be 1 through the moderating proxy", "n")
    return messages


class Upstream:
    """The upstream's OpenAI API over one shared HTTP client (made on first use, in the serving loop)."""

    def __init__(self, settings: ModerationSettings) -> None:
        self.settings = settings
        self._client = None

    def client(self):
        import httpx

        if self._client is None:
            up = self.settings.upstream
            key = os.environ.get(up.api_key_env, "") if up.api_key_env else ""
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            self._client = httpx.AsyncClient(base_url=up.base_url.rstrip("/"), headers=headers,
                                             timeout=httpx.Timeout(up.timeout_s))
        return self._client


def _cut(cid: str, created: int, model: str, verdict: Verdict, **counts) -> list[str]:
    """The end of a stream the guard stopped: finish_reason content_filter with why, then [DONE]."""
    return [_chunk(cid, created, model, {}, "content_filter", moderation=verdict.to_json(**counts)), "data: [DONE]\n\n"]


def _chunk(cid: str, created: int, model: str, delta: dict, finish: str | None = None, **extra) -> str:
    payload = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
               "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], **extra}
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


async def _upstream_error(response) -> UpstreamError:
    raw = await response.aread()
    try:
        message = json.loads(raw)["error"]["message"]
    except Exception:  # noqa: BLE001 - any body: pass on its start
        message = raw[:300].decode("utf-8", "replace")
    return UpstreamError(f"upstream answered {response.status_code}: {message}")


async def moderated_stream(body: dict, settings: ModerationSettings, check: Check, upstream: Upstream,
                           prompt_verdict: Verdict | None) -> AsyncIterator[str]:
    """The client's SSE stream. `prompt_verdict` is the check made before the stream started (None: no
    prompt check); a harmful prompt ends the stream at once without calling the upstream."""
    import httpx

    cid, created, model = f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), settings.upstream.model
    yield _chunk(cid, created, model, {"role": "assistant", "content": ""})
    if prompt_verdict is not None and prompt_verdict.harmful:
        for line in _cut(cid, created, model, prompt_verdict, checked_tokens=0):
            yield line
        return
    conversation = guard_conversation(body["messages"])
    mod = StreamModerator(settings.check_every_tokens, settings.check_at_sentence_end,
                          settings.min_tokens_between_checks, settings.release == "after_check")
    finish, usage = None, None
    request = {**body, "stream": True, "model": model, "stream_options": {"include_usage": True}}
    try:
        async with upstream.client().stream("POST", "/chat/completions", json=request) as response:
            if response.status_code != 200:
                err = await _upstream_error(response)
                yield _chunk(cid, created, model, {}, "error", error=err.body()["error"])
                yield "data: [DONE]\n\n"
                return
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                event = json.loads(data)
                usage = event.get("usage") or usage
                for choice in event.get("choices") or []:
                    finish = choice.get("finish_reason") or finish
                    delta = (choice.get("delta") or {}).get("content")
                    if not delta:
                        continue
                    due, now = mod.add(delta)
                    if now:
                        yield _chunk(cid, created, model, {"content": now})
                    if due:
                        verdict = await check(conversation, mod.text)
                        if verdict.harmful:
                            for line in _cut(cid, created, model, verdict, checked_tokens=mod.tokens, checks=mod.checks + 1):
                                yield line
                            return  # leaving the `async with` closes the upstream request
                        released = mod.passed()
                        if released:
                            yield _chunk(cid, created, model, {"content": released})
    except httpx.HTTPError as exc:
        err = UpstreamError(f"upstream unreachable: {type(exc).__name__}: {exc}")
        yield _chunk(cid, created, model, {}, "error", error=err.body()["error"])
        yield "data: [DONE]\n\n"
        return
    if mod.pending():
        verdict = await check(conversation, mod.text)
        if verdict.harmful:
            for line in _cut(cid, created, model, verdict, checked_tokens=mod.tokens, checks=mod.checks + 1):
                yield line
            return
        released = mod.passed()
        if released:
            yield _chunk(cid, created, model, {"content": released})
    moderation = {"stage": "response", "harmful": False, "checks": mod.checks, "checked_tokens": mod.tokens}
    yield _chunk(cid, created, model, {}, finish or "stop", moderation=moderation,
                 **({"usage": usage} if usage else {}))
    yield "data: [DONE]\n\n"


async def moderated_completion(body: dict, settings: ModerationSettings, check: Check, upstream: Upstream,
                               prompt_verdict: Verdict | None) -> dict:
    """The non-streaming form: the upstream's whole answer, checked once, returned or withheld."""
    import httpx

    model = settings.upstream.model
    base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()), "model": model}

    def filtered(verdict: Verdict, usage=None) -> dict:
        return {**base, "choices": [{"index": 0, "message": {"role": "assistant", "content": ""}, "logprobs": None,
                                     "finish_reason": "content_filter"}],
                "usage": usage, "moderation": verdict.to_json()}

    if prompt_verdict is not None and prompt_verdict.harmful:
        return filtered(prompt_verdict)
    try:
        response = await upstream.client().post("/chat/completions", json={**body, "stream": False, "model": model})
    except httpx.HTTPError as exc:
        raise UpstreamError(f"upstream unreachable: {type(exc).__name__}: {exc}") from None
    if response.status_code != 200:
        raise await _upstream_error(response)
    answer = response.json()
    choice = (answer.get("choices") or [{}])[0]
    text = (choice.get("message") or {}).get("content") or ""
    verdict = await check(guard_conversation(body["messages"]), text)
    if verdict.harmful:
        return filtered(verdict, answer.get("usage"))
    return {**base, "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                                 "finish_reason": choice.get("finish_reason") or "stop"}],
            "usage": answer.get("usage"), "moderation": verdict.to_json()}


def service_check(service, settings: ModerationSettings) -> Check:
    """A `Check` through the guard service (in a replica, or the ingress's remote one): a no_think
    score-only call by default. A missing verdict counts as harmful (the proxy fails closed)."""
    from serve.schemas import GuardRequest

    async def check(conversation: list[dict], response: str | None) -> Verdict:
        if response is None:  # the prompt check judges the conversation up to its last user turn
            last_user = max(i for i, m in enumerate(conversation) if m.get("role") == "user")
            messages = conversation[: last_user + 1]
        else:
            messages = [*conversation, {"role": "assistant", "content": response}]
        request = GuardRequest(messages=messages, mode=settings.mode, policy=settings.policy,
                               threshold=settings.threshold, score_only=settings.mode == "no_think")
        result = await service.guard(request)
        stage = "prompt" if response is None else "response"
        judged = result.prompt_harm if response is None else result.response_harm
        harmful = result.flagged if result.flagged is not None else True
        reason = result.flag_reason or (f"{stage} judged {judged}" if harmful else None)
        return Verdict(bool(harmful), stage, result.prompt_harm, result.response_harm, result.score, reason)

    return check


class ModeratingProxy:
    """/v1/chat/completions for the upstream's model: the prompt is checked before anything streams, so
    its errors (413, 422, 503) are ordinary JSON answers; then the streamed or whole answer."""

    def __init__(self, service, settings: ModerationSettings) -> None:
        self.settings = settings
        self.upstream = Upstream(settings)
        self.check = service_check(service, settings)

    def serves(self, body: dict) -> bool:
        return body.get("model") == self.settings.upstream.model

    async def handle(self, body: dict):
        from fastapi.responses import JSONResponse, StreamingResponse

        check_request(body)
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise InvalidInput("stream must be true or false", "stream")
        verdict = await self.check(guard_conversation(body["messages"]), None) if self.settings.check_prompt else None
        if stream:
            return StreamingResponse(moderated_stream(body, self.settings, self.check, self.upstream, verdict),
                                     media_type="text/event-stream", headers={"Cache-Control": "no-store"})
        return JSONResponse(await moderated_completion(body, self.settings, self.check, self.upstream, verdict))



# --- /v1/guard/stream: chunks pushed by the caller -------------------------------------------------


def approx_tokens(text: str) -> int:
    """Words and punctuation marks: close to a BPE tokenizer's count on English text, with no tokenizer
    in the HTTP front (the ingress holds no model)."""
    return len(_TOKENISH.findall(text))


def stream_check_due(text: str, checked_chars: int, *, every_tokens: int, at_sentence_end: bool = True,
                     min_gap: int = 8, final: bool = False) -> bool:
    """Whether the response so far needs a check: new text of `every_tokens` tokens, a sentence end after
    at least `min_gap`, or the end of the stream with anything unchecked."""
    new = text[min(checked_chars, len(text)):]
    if not new.strip():
        return False
    if final:
        return True
    n = approx_tokens(new)
    return n >= every_tokens or (at_sentence_end and n >= min_gap and bool(_SENTENCE_END.search(text)))


async def check_pushed_stream(service, request, settings: ModerationSettings | None):
    """One /v1/guard/stream call: check the response so far when due (no_think by default), and say
    what the caller may show. A missing verdict cuts (fail closed), as in the proxy."""
    from serve.schemas import GuardRequest, GuardStreamCheck

    text = request.response
    start = min(request.checked_chars, len(text))
    every = request.check_every_tokens or (settings.check_every_tokens if settings else 32)
    due = stream_check_due(text, start, every_tokens=every, final=request.final,
                           at_sentence_end=settings.check_at_sentence_end if settings else True,
                           min_gap=min(every, settings.min_tokens_between_checks if settings else 8))
    if not due:
        return GuardStreamCheck(action="release" if start == len(text) and start else "wait", checked=False,
                                checked_chars=start, release_chars=start)
    options = request.model_dump(include={"policy", "reasoning_budget", "return_reasoning", "score_only", "threshold",
                                          "temperature", "seed", "timeout_s"}, exclude_none=True)
    mode = request.mode or (settings.mode if settings else "no_think")
    result = await service.guard(GuardRequest(prompt=request.prompt, response=text, mode=mode, **options))
    harmful = result.flagged if result.flagged is not None else True
    if harmful:
        reason = result.flag_reason or f"response judged {result.response_harm or 'unparsed'}"
        return GuardStreamCheck(action="cut", checked=True, checked_chars=start, release_chars=start,
                                finish_reason="content_filter", reason=reason, result=result)
    return GuardStreamCheck(action="release", checked=True, checked_chars=len(text), release_chars=len(text), result=result)
