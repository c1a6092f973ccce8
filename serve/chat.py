"""The OpenAI chat side of the guard: a chat message as the engine takes it, and whether a guard
prompt rendered elsewhere (NeMo Guardrails, a client) carries a response to judge."""

from __future__ import annotations

import re

from reasonguard.prompts import ToolCall, Turn
from serve.schemas import ChatMessageIn


def chat_turn(message: ChatMessageIn) -> dict:
    """A chat message as the engine takes it ({role, content}, content always text): a developer message is
    a system turn; an assistant's tool calls follow its text as `[tool call] name(arguments)` lines (the
    rendering of the guard prompt), so any chat template shows them; a tool result keeps the role `tool`."""
    role = "system" if message.role == "developer" else message.role
    calls = tuple(ToolCall(c.function.name, c.function.arguments, c.id) for c in message.tool_calls or ())
    return {"role": role, "content": Turn("assistant", message.text(), calls).text() if calls else message.text()}


_ASSISTANT_HEADER = re.compile(r"^AI assistant:[ \t]*$", re.M)
_NO_RESPONSE = re.compile(r"^AI assistant:[ \t]*\n[ \t]*None[ \t]*\n\s*Use the (?:taxonomy|policy)", re.M)


def prompt_has_response(prompt_text: str) -> bool:
    """Whether a guard prompt rendered elsewhere (NeMo Guardrails, a client) carries a response to
    judge. Only an unambiguous `AI assistant:` / `None` block reads as prompt-only: a response that
    itself contains such a block cannot turn the response verdict off."""
    headers = _ASSISTANT_HEADER.findall(prompt_text)
    return not (len(headers) == 1 and _NO_RESPONSE.search(prompt_text) is not None)
