"""Request and response models of the guard's HTTP API (pydantic, every field bounded).

The static bounds here are hard ceilings that keep parsing cheap; the deployment's own limits
(`ServeConfig.limits`, usually tighter) are checked by the server and answered with 413.
Models that mirror OpenAI keep OpenAI's field names and order.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from reasonguard.policy import MAX_CATEGORIES, MAX_CATEGORY_CHARS  # noqa: E402,F401 - limits of the policy spec
from reasonguard.vocabulary import HarmValue, Mode, PolicySpec  # noqa: E402 - the guard vocabulary, declared once

# Ceilings of the schema itself; ServeConfig.limits are checked after parsing and give 413.


def _not_a_boolean(value):
    """JSON's true/false are not integers (the schema says integer); 3.0 is (JSON Schema agrees)."""
    if isinstance(value, bool):
        raise ValueError("must be an integer, not true or false")
    return value

HARD_MAX_TEXT = 1_000_000
HARD_MAX_MESSAGES = 1_000
HARD_MAX_ITEMS = 10_000
MAX_ID_CHARS = 256

Text = Annotated[str, Field(max_length=HARD_MAX_TEXT)]


class _Strict(BaseModel):
    """Unknown fields are errors (a misspelt option must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid")


# Tool calls (OpenAI format). A name is one token of plain characters: it is shown to the guard as is.
HARD_MAX_TOOL_CALLS = 128
HARD_MAX_TOOLS = 128  # tool definitions in a chat request (OpenAI's own limit)
MAX_TOOL_NAME_CHARS = 128
TOOL_NAME_PATTERN = r"^[A-Za-z0-9_.:-]+$"


class FunctionCall(_Strict):
    """OpenAI's `tool_calls[].function`: the call the guard judges as the assistant's action."""

    name: str = Field(max_length=MAX_TOOL_NAME_CHARS, pattern=TOOL_NAME_PATTERN,
                      description="The tool's name: letters, digits, '_', '-', '.', ':'.")
    arguments: Text = Field(description="The arguments as the model wrote them (JSON text), shown to the guard verbatim.")


class ToolCall(_Strict):
    """One entry of an assistant message's `tool_calls`."""

    id: str = Field(max_length=MAX_ID_CHARS, description="Pairs the call with its result (a tool message's `tool_call_id`).")
    type: Literal["function"] = "function"
    function: FunctionCall


def _role_is(role: str) -> dict:
    return {"properties": {"role": {"const": role}}, "required": ["role"]}


def _message_rules(schema: dict, _model=None) -> None:
    """`message_problem` in the OpenAPI schema too: `tool_call_id` exactly on tool messages, `tool_calls`
    only on assistant messages, `content` null only beside a non-empty `tool_calls`."""
    with_calls = {"allOf": [_role_is("assistant"),
                            {"properties": {"tool_calls": {"type": "array", "minItems": 1}}, "required": ["tool_calls"]}]}
    content = [kind for kind in schema["properties"]["content"]["anyOf"] if kind.get("type") != "null"]
    schema["allOf"] = [
        {"if": _role_is("tool"), "then": {"required": ["tool_call_id"], "properties": {"tool_call_id": {"type": "string"}}},
         "else": {"properties": {"tool_call_id": {"type": "null"}}}},
        {"if": _role_is("assistant"), "else": {"properties": {"tool_calls": {"type": "null"}}}},
        {"if": with_calls, "else": {"required": ["content"], "properties": {"content": {"anyOf": content}}}},
    ]


def message_problem(role: str, has_content: bool, tool_calls: list | None, tool_call_id: str | None) -> str | None:
    """What is wrong with one message's fields for its role (OpenAI's rules), or None."""
    if role == "tool" and tool_call_id is None:
        return "a tool message needs 'tool_call_id' (the id of the call it answers)"
    if role != "tool" and tool_call_id is not None:
        return "'tool_call_id' belongs to tool messages only"
    if role != "assistant" and tool_calls is not None:
        return "'tool_calls' belongs to assistant messages only"
    if not has_content and not tool_calls:
        return "'content' may be null only in an assistant message with tool_calls"
    return None


class Message(_Strict):
    """An OpenAI-style message. An assistant message may carry `tool_calls` (content null or text); a `tool`
    message is the result of one call (`tool_call_id`)."""

    model_config = ConfigDict(json_schema_extra=_message_rules)

    role: Literal["system", "user", "assistant", "tool"]
    content: Text | None = Field(None, description="The text; null only in an assistant message with tool_calls.")
    tool_calls: list[ToolCall] | None = Field(
        None, max_length=HARD_MAX_TOOL_CALLS, description="Assistant only: the calls it makes, judged as its action.")
    tool_call_id: str | None = Field(None, max_length=MAX_ID_CHARS, description="Tool only: the id of the call answered.")

    @model_validator(mode="after")
    def _role_fields(self) -> "Message":
        problem = message_problem(self.role, self.content is not None, self.tool_calls, self.tool_call_id)
        if problem:
            raise ValueError(problem)
        return self


_USER_TURN = {"type": "object", "properties": {"role": {"const": "user"}}, "required": ["role"]}


class Conversation(_Strict):
    """One conversation: `prompt` (+ optional `response`), or an OpenAI-style `messages` list."""

    # The rule of `_one_form`, in the OpenAPI schema too: exactly one of the two forms.
    model_config = ConfigDict(json_schema_extra={"oneOf": [
        {"required": ["prompt"], "properties": {"prompt": {"type": "string"}, "messages": {"type": "null"}}},
        {"required": ["messages"], "properties": {"messages": {"type": "array", "contains": _USER_TURN},
                                                  "prompt": {"type": "null"}, "response": {"type": "null"}}},
    ]})

    id: str | None = Field(None, max_length=MAX_ID_CHARS, description="Echoed back in the result (batch bookkeeping).")
    prompt: Text | None = Field(None, description="The user's prompt.")
    response: Text | None = Field(None, description="The assistant's response, when the response is to be judged.")
    messages: list[Message] | None = Field(
        None, min_length=1, max_length=HARD_MAX_MESSAGES,
        description="A conversation instead of prompt/response: the last user turn is judged, with the assistant turn "
        "after it (if any) as the response (with tool calls: the whole tool exchange after it); earlier turns are "
        "context; a system message is the policy.",
    )

    @model_validator(mode="after")
    def _one_form(self) -> "Conversation":
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give either 'prompt' (with an optional 'response') or 'messages', not both and not neither")
        if self.messages is not None:
            if self.response is not None:
                raise ValueError("'response' goes with 'prompt'; in 'messages' the response is the assistant turn")
            if not any(m.role == "user" for m in self.messages):
                raise ValueError("'messages' needs at least one user turn")
        return self


class GuardOptions(_Strict):
    """How to judge: mode, policy, budget, score threshold; shared by every conversation of a request."""

    mode: Mode | None = Field(None, description="'think' (reasoning first) or 'no_think'; default from the server config.")
    policy: PolicySpec = Field(
        None,
        description="None or 'default' = the Aegis 2.0 taxonomy; a list of category names; or a free-text policy.",
    )
    reasoning_budget: int | None = Field(
        None, ge=1, description="think mode: most reasoning tokens (the verdict gets its own small allowance)."
    )
    return_reasoning: bool = Field(False, description="Include the reasoning text (think mode) in the result.")
    score_only: bool = Field(
        False, description="Fastest path: no reasoning, generation stops right after the verdict; returns verdict + score."
    )
    threshold: float | None = Field(None, ge=0, le=1, description="Decide `flagged` as score >= threshold.")
    categories: bool | None = Field(
        None, description="Also name the violated categories (`categories`, `category_codes`); default from the server "
        "config (guard.categories). Ignored with score_only, which stops at the verdict.")
    temperature: float | None = Field(None, ge=0, le=2, description="Sampling temperature (default from the server).")
    seed: int | None = Field(None, ge=0, le=2**31 - 1, description="Sampling seed, for reproducible samples.")
    timeout_s: float | None = Field(None, gt=0, description="Deadline for this request (capped by the server's maximum).")

    _integers_not_booleans = field_validator("reasoning_budget", "seed", mode="before")(_not_a_boolean)



_NO_SYSTEM_TURN = {"anyOf": [{"type": "null"}, {"type": "array", "not": {"contains": {
    "type": "object", "properties": {"role": {"const": "system"}}, "required": ["role"]}}}]}
_POLICY_GIVEN = {"required": ["policy"], "properties": {"policy": {"not": {"type": "null"}}}}


def _policy_excludes_system_turns(schema: dict, batch: bool) -> None:
    """The rule 'a system message is the policy: not both' in the schema: if a policy is given, no
    conversation's messages (the request's own, or each of `inputs`) hold a system turn."""
    conversation = {"properties": {"messages": _NO_SYSTEM_TURN}}
    rule = {"properties": {"inputs": {"items": conversation}}} if batch else conversation
    schema.setdefault("allOf", []).append({"if": _POLICY_GIVEN, "then": rule})


def _single_request_schema(schema: dict, _model) -> None:
    schema["oneOf"] = Conversation.model_config["json_schema_extra"]["oneOf"]
    _policy_excludes_system_turns(schema, batch=False)


def _batch_request_schema(schema: dict, _model) -> None:
    _policy_excludes_system_turns(schema, batch=True)


class GuardRequest(Conversation, GuardOptions):
    """POST /v1/guard, single form: one conversation plus options."""

    model_config = ConfigDict(json_schema_extra=_single_request_schema)


class GuardStreamRequest(GuardOptions):
    """POST /v1/guard/stream: the response so far of a stream the caller reads from elsewhere; the guard
    checks it when a check is due (every N new tokens, at sentence ends, at the end). Stateless: the
    caller sends the whole response so far and the `checked_chars` of the previous answer."""

    prompt: Text = Field(description="The user's prompt the streamed response answers.")
    response: Text = Field(description="The response streamed so far: all of it, not only the newest part.")
    checked_chars: int = Field(0, ge=0, description="Characters of `response` a previous check passed (that answer's "
                               "`checked_chars`; 0 at the start). A value past the end counts as the whole response.")
    final: bool = Field(False, description="The stream has ended: check whatever is not checked yet.")
    check_every_tokens: int | None = Field(
        None, ge=1, le=4096, description="Check once this many new tokens arrived (counted as words and punctuation "
        "marks); default: the server's moderation setting, else 32.")

    _integers_not_booleans = field_validator("reasoning_budget", "seed", "checked_chars", "check_every_tokens",
                                             mode="before")(_not_a_boolean)


class GuardBatchRequest(GuardOptions):
    """POST /v1/guard, batch form: many conversations sharing the options."""

    inputs: list[Conversation] = Field(min_length=1, max_length=HARD_MAX_ITEMS, description="The conversations to judge.")

    model_config = ConfigDict(json_schema_extra=_batch_request_schema)


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class GuardResult(BaseModel):
    """The guard's judgement of one conversation."""

    id: str | None = Field(None, description="The conversation's id, when one was given.")
    prompt_harm: HarmValue | None = Field(description="Verdict on the user's prompt (None when the output did not parse).")
    response_harm: HarmValue | None = Field(description="Verdict on the response; None without a response.")
    score: float | None = Field(
        description="P(harmful) of the judged turn (the response when there is one, else the prompt), from the verdict "
        "token's log-probabilities (calibrated when the guard has a calibration); None when the verdict could not be located."
    )
    prompt_score: float | None = Field(description="P(prompt harmful).")
    response_score: float | None = Field(description="P(response harmful); None without a response.")
    threshold: float | None = Field(description="The threshold applied, if any.")
    flagged: bool | None = Field(
        description="score >= threshold when both exist; otherwise the judged verdict == 'harmful'; None if neither."
    )
    flag_reason: str | None = Field(
        None, description="Why `flagged` was decided without a verdict (guard.on_missing_verdict; fail closed by default).",
    )
    calibrated: bool = Field(False, description="Whether `score` is calibrated (calibration.json of the guard).")
    constrained: bool = Field(False, description="Whether the verdict was decoded under the verdict constraint.")
    categories: list[str] = Field(
        default_factory=list, description="Names of the violated categories (asked with `categories`): the policy's "
        "category names, or the model's own words for a free-text policy.")
    category_codes: list[str] = Field(
        default_factory=list, description="Codes of the violated categories (e.g. S1, S10) for a taxonomy policy.")
    reasoning: str | None = Field(None, description="The reasoning (think mode, when return_reasoning is true).")
    parsed_ok: bool = Field(description="Whether the model's output held a well-formed verdict.")
    parse_error: str | None = None
    finish_reason: str | None = None
    usage: Usage


class GuardResponse(GuardResult):
    """POST /v1/guard response, single form."""

    object: Literal["guard.result"] = "guard.result"
    model: str
    mode: Mode
    policy: str = Field(description="'aegis2' for the default taxonomy, else 'custom' (a `policy`, or a system message).")
    latency_ms: float


class GuardStreamCheck(BaseModel):
    """What the caller of /v1/guard/stream does next."""

    object: Literal["guard.stream_check"] = "guard.stream_check"
    action: Literal["release", "wait", "cut"] = Field(
        description="release: `response[:release_chars]` is checked and may be shown; wait: no check was due, keep "
        "streaming (show nothing new if you hold text back until checked); cut: the response is harmful, stop the stream.")
    checked: bool = Field(description="Whether the guard ran for this call.")
    checked_chars: int = Field(description="Characters of the response passed so far: send it back with the next call.")
    release_chars: int = Field(description="How much of the response may be shown (a cut keeps what earlier checks passed).")
    finish_reason: Literal["content_filter"] | None = Field(None, description="'content_filter' when the stream is cut.")
    reason: str | None = Field(None, description="Why the stream was cut.")
    result: GuardResponse | None = Field(None, description="The guard's answer, when it ran.")


class GuardBatchResponse(BaseModel):
    """POST /v1/guard response, batch form (results in input order)."""

    object: Literal["guard.batch"] = "guard.batch"
    model: str
    mode: Mode
    policy: str = Field(description="'aegis2' when every conversation was judged by the default taxonomy, else 'custom'.")
    results: list[GuardResult]
    usage: Usage
    latency_ms: float


# --- OpenAI-compatible chat completions -------------------------------------------------------


class ChatFunctionCall(FunctionCall):
    model_config = ConfigDict(extra="ignore")


class ChatToolCall(ToolCall):
    model_config = ConfigDict(extra="ignore")

    function: ChatFunctionCall


class ChatMessageIn(BaseModel):
    """An OpenAI chat message; content may be a string or a list of text parts. An assistant message may
    carry `tool_calls` (content null or text), a `tool` message answers one call (`tool_call_id`)."""

    model_config = ConfigDict(extra="ignore", json_schema_extra=_message_rules)

    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: Text | list["ContentPart"] | None = None
    name: str | None = Field(None, max_length=MAX_ID_CHARS)
    tool_calls: list[ChatToolCall] | None = Field(None, max_length=HARD_MAX_TOOL_CALLS)
    tool_call_id: str | None = Field(None, max_length=MAX_ID_CHARS)

    @model_validator(mode="after")
    def _role_fields(self) -> "ChatMessageIn":
        problem = message_problem(self.role, self.content is not None, self.tool_calls, self.tool_call_id)
        if problem:
            raise ValueError(problem)
        return self

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["text"]
    text: Text


ChatMessageIn.model_rebuild()


class ChatFunctionDefinition(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(max_length=MAX_TOOL_NAME_CHARS, pattern=TOOL_NAME_PATTERN)
    description: Text | None = None
    parameters: dict[str, Any] | None = None


class ChatTool(BaseModel):
    """A tool definition of the request: accepted and not used (the guard calls no tools, and its prompt is
    the guard prompt the client rendered; a policy names the tools an agent may call)."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["function"] = "function"
    function: ChatFunctionDefinition


class ChatCompletionRequest(BaseModel):
    """POST /v1/chat/completions. Fields other clients send that do not apply to a guard are ignored
    (`tools`, `tool_choice`: the guard never calls a tool); ones that would change the answer's shape and
    are unsupported (stream, logprobs) are rejected."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(max_length=MAX_ID_CHARS)
    messages: list[ChatMessageIn] = Field(min_length=1, max_length=HARD_MAX_MESSAGES)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    n: int = Field(1, ge=1, le=128)
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    # Unsupported options that would change the answer's shape are in the schema as their one accepted
    # value, so the OpenAPI document says exactly what the server takes (and 422 says why otherwise).
    stream: Literal[False] | None = Field(False, description="Streaming is not supported: false or absent.")
    logprobs: Literal[False] | None = Field(
        False, description="Token logprobs are not returned: false or absent (/v1/guard returns P(harmful) as `score`).")
    top_logprobs: Literal[0] | None = Field(None, description="Not supported: 0 or absent.")
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    tools: list[ChatTool] | None = Field(
        None, max_length=HARD_MAX_TOOLS,
        description="Accepted and ignored: the guard never calls a tool (the answer is the guard's text).")
    user: str | None = Field(None, max_length=MAX_ID_CHARS)

    _integers_not_booleans = field_validator("max_tokens", "max_completion_tokens", "n", "seed", mode="before")(_not_a_boolean)

    @field_validator("stream", "logprobs", "top_logprobs", mode="wrap")
    @classmethod
    def _unsupported(cls, value, handler, info):
        try:
            return handler(value)
        except ValueError:
            why = {"stream": "streaming is not supported by the guard; set stream to false",
                   "logprobs": "logprobs are not returned by the guard; set logprobs to false "
                               "(/v1/guard returns P(harmful) as score)",
                   "top_logprobs": "top_logprobs are not returned by the guard; leave top_logprobs out"}[info.field_name]
            raise ValueError(why) from None


class ChatMessageOut(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int
    message: ChatMessageOut
    logprobs: None = None
    finish_reason: str | None


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "reasonguard"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: int


class ErrorResponse(BaseModel):
    """Every error, OpenAI style: {"error": {"message", "type", "param", "code"}}."""

    error: ErrorDetail
