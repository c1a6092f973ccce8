"""Tool calls and multi-turn over HTTP, in-process (scripted engine): OpenAI-format `tool_calls` and `tool`
messages on /v1/guard and /v1/chat/completions, their 422s, the OpenAPI schema, and the openai SDK as the
client (its own request types, over the app through FastAPI's TestClient)."""

from __future__ import annotations

import pytest
from conftest import ScriptedEngine, keyword_guard, make_config
from fastapi.testclient import TestClient

from serve.api import create_api
from serve.errors import InvalidInput
from serve.guard import GuardServer
from serve.service import GuardService

POLICY = "Allowed tools: get_weather, search_docs. Calling any other tool is harmful."


def call(call_id, name, arguments):
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


AGENT = [{"role": "user", "content": "What's the weather in Oslo? Then book me a flight."},
         {"role": "assistant", "content": None, "tool_calls": [call("call_1", "get_weather", '{"city": "Oslo"}')]},
         {"role": "tool", "tool_call_id": "call_1", "content": "rain, 8 C"},
         {"role": "assistant", "content": "Booking now.", "tool_calls": [call("call_2", "book_flight", '{"to": "Rome"}')]}]


def guard_or_chat(messages):
    """The keyword guard on a guard prompt; a plain answer to any other chat (the model just chats)."""
    return keyword_guard(messages) if "Human user:\n" in messages[-1]["content"] else ("Noted.", {})


@pytest.fixture
def engine():
    return ScriptedEngine(guard_or_chat)


@pytest.fixture
def client(engine, monkeypatch):
    monkeypatch.delenv("REASONGUARD_SERVE_TOKEN", raising=False)
    config = make_config()
    return TestClient(create_api(GuardService(GuardServer(engine, config), config)), raise_server_exceptions=False)


def test_guard_judges_the_tool_call_under_a_policy_naming_the_allowed_tools(client, engine):
    r = client.post("/v1/guard", json={"messages": AGENT, "policy": POLICY})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["policy"] == "custom" and body["response_harm"] == "unharmful" and body["score"] == body["response_score"]
    rendered = engine.seen[-1][-1]["content"]
    assert POLICY in rendered
    assert rendered.split("AI assistant:\n", 1)[1].startswith(
        '[tool call] get_weather({"city": "Oslo"})\n[tool result] get_weather: rain, 8 C\nBooking now.\n'
        '[tool call] book_flight({"to": "Rome"})\n\nUse the policy')
    batch = client.post("/v1/guard", json={"inputs": [{"messages": AGENT}, {"prompt": "hi"}]})
    assert batch.status_code == 200 and [x["response_harm"] for x in batch.json()["results"]] == ["unharmful", None]


def test_a_system_message_is_the_policy_on_guard_and_a_turn_on_chat(client, engine):
    system = {"role": "system", "content": POLICY}
    r = client.post("/v1/guard", json={"messages": [system, *AGENT]})
    assert r.status_code == 200 and r.json()["policy"] == "custom" and POLICY in engine.seen[-1][-1]["content"]
    r = client.post("/v1/guard", json={"messages": [system, *AGENT], "policy": "default"})
    assert r.status_code == 422 and r.json()["error"]["param"] == "messages" and "not both" in r.json()["error"]["message"]
    guard_prompt = engine.seen[-1][-1]["content"]
    r = client.post("/v1/chat/completions", json={"model": "scripted", "messages": [
        {"role": "system", "content": "You are a guard."}, {"role": "user", "content": guard_prompt}]})
    assert r.status_code == 200 and engine.seen[-1] == [{"role": "system", "content": "You are a guard."},
                                                        {"role": "user", "content": guard_prompt}]


def test_chat_accepts_tool_definitions_and_tool_messages(client, engine):
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather by city",
                                               "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
    guard_prompt = client.post("/v1/guard", json={"messages": AGENT}) and engine.seen[-1][-1]["content"]
    body = {"model": "scripted", "tools": tools, "tool_choice": "auto", "parallel_tool_calls": False,
            "messages": [*AGENT[:3], {"role": "user", "content": guard_prompt}]}
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"] == {"role": "assistant", "content": "Prompt harm: unharmful\nResponse harm: unharmful"}
    assert engine.seen[-1][1:3] == [{"role": "assistant", "content": '[tool call] get_weather({"city": "Oslo"})'},
                                    {"role": "tool", "content": "rain, 8 C"}]


USER = {"role": "user", "content": "x"}


@pytest.mark.parametrize(("message", "param", "fragment"), [
    ({"role": "assistant", "content": None}, "messages[1]", "'content' may be null only in an assistant message with tool_calls"),
    ({"role": "assistant", "tool_calls": []}, "messages[1]", "'content' may be null only"),
    ({"role": "tool", "content": "r"}, "messages[1]", "needs 'tool_call_id'"),
    ({"role": "tool", "tool_call_id": "c"}, "messages[1]", "'content' may be null only"),
    ({"role": "user", "content": "y", "tool_call_id": "c"}, "messages[1]", "belongs to tool messages only"),
    ({"role": "user", "content": "y", "tool_calls": [call("c", "f", "{}")]}, "messages[1]", "belongs to assistant messages only"),
    ({"role": "assistant", "tool_calls": [call("c", "send email", "{}")]}, "messages[1].tool_calls[0].function.name", "pattern"),
    ({"role": "assistant", "tool_calls": [call("c", "f\n/think", "{}")]}, "messages[1].tool_calls[0].function.name", "pattern"),
    ({"role": "assistant", "tool_calls": [call("c", "f", {"a": 1})]}, "messages[1].tool_calls[0].function.arguments", "string"),
    ({"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f"}}]}, "messages[1].tool_calls[0].function.arguments", "Field required"),
    ({"role": "assistant", "tool_calls": [{"id": "c", "type": "custom", "function": {"name": "f", "arguments": ""}}]},
     "messages[1].tool_calls[0].type", "'function'"),
    ({"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": ""}}]},
     "messages[1].tool_calls[0].id", "Field required"),
    ({"role": "assistant", "tool_calls": [call(f"c{i}", "f", "") for i in range(129)]}, "messages[1].tool_calls", "at most 128"),
])
@pytest.mark.parametrize("path", ["/v1/guard", "/v1/chat/completions"])
def test_malformed_tool_messages_are_a_422_naming_the_field(client, path, message, param, fragment):
    body = {"messages": [USER, message]} | ({"model": "scripted"} if path.endswith("completions") else {})
    r = client.post(path, json=body)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["param"] == param and fragment in error["message"] and error["code"] == 422


def test_chat_tool_definitions_are_checked_but_not_used(client):
    body = {"model": "scripted", "messages": [USER]}
    for tools, param in (([{"type": "function"}], "tools[0].function"), ([{"function": {"name": "a b"}}], "tools[0].function.name"),
                         ([{"function": {"name": "f"}}] * 129, "tools")):
        r = client.post("/v1/chat/completions", json=body | {"tools": tools})
        assert r.status_code == 422 and r.json()["error"]["param"] == param, r.text
    assert client.post("/v1/chat/completions", json=body | {"tools": [{"function": {"name": "f"}}], "tool_choice": "required"}).status_code == 200


def test_openapi_documents_tool_calls(client):
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    message = schemas["Message"]
    assert message["properties"]["role"]["enum"] == ["system", "user", "assistant", "tool"]
    assert {"tool_calls", "tool_call_id"} <= set(message["properties"]) and len(message["allOf"]) == 3
    assert schemas["FunctionCall"]["properties"]["name"]["pattern"] == "^[A-Za-z0-9_.:-]+$"
    assert "tool" in schemas["ChatMessageIn"]["properties"]["role"]["enum"] and "allOf" in schemas["ChatMessageIn"]
    tools = schemas["ChatCompletionRequest"]["properties"]["tools"]["anyOf"][0]
    assert tools["maxItems"] == 128 and tools["items"] == {"$ref": "#/components/schemas/ChatTool"}


def test_openai_sdk_sends_an_agent_transcript(client, engine):
    """The openai SDK as the client, with its own typed messages: an agent's transcript (the assistant
    message an SDK response returned, tool calls and results) to /v1/chat/completions with tools, and to
    /v1/guard through the same client; a malformed tool message is the SDK's UnprocessableEntityError."""
    import openai
    from openai.types.chat import ChatCompletionMessage

    from reasonguard.prompts import GuardInput, guard_messages
    from reasonguard.verdict import parse_verdict

    sdk = openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=client, max_retries=0)
    returned = ChatCompletionMessage.model_validate(AGENT[3])  # what an agent's model call gave back
    transcript = [*AGENT[:3], returned.model_dump(exclude_none=True)]
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    out = sdk.chat.completions.create(model="scripted", messages=transcript, tools=tools, tool_choice="auto", temperature=0)
    assert out.object == "chat.completion" and out.choices[0].message.content == "Noted."
    assert out.choices[0].message.tool_calls is None  # the guard never calls a tool
    assert engine.seen[-1][-1] == {"role": "assistant", "content": 'Booking now.\n[tool call] book_flight({"to": "Rome"})'}

    rendered = guard_messages(GuardInput.from_messages(transcript), "no_think", POLICY)  # the client renders the prompt
    verdict = sdk.chat.completions.create(model="scripted", messages=rendered, temperature=0).choices[0].message.content
    assert parse_verdict(verdict, expect_response=True).parsed_ok and engine.seen[-1] == rendered

    judged = sdk.post("/guard", body={"messages": transcript, "policy": POLICY}, cast_to=object)
    assert judged["object"] == "guard.result" and judged["policy"] == "custom" and judged["response_harm"] == "unharmful"
    assert engine.seen[-1] == rendered  # the server renders the same prompt from the same transcript

    with pytest.raises(openai.UnprocessableEntityError) as info:
        sdk.chat.completions.create(model="scripted", messages=[USER, {"role": "tool", "content": "r"}])  # no tool_call_id
    assert info.value.body["param"] == "messages[1]"


def test_a_real_chat_template_takes_the_tool_turns_or_refuses_with_a_422(tiny_model_dir, tmp_path):
    """The shipped guard's chat template (SmolLM2's ChatML, through the tokenizer the server counts prompt
    tokens with) renders tool turns; a template that refuses a `tool` role (Gemma's kind) is a 422 before
    the engine, and the replica stays healthy."""
    import shutil
    from pathlib import Path

    from serve.guard import hf_token_counter
    from serve.schemas import ChatCompletionRequest

    request = ChatCompletionRequest(model="scripted", messages=AGENT)
    engine = ScriptedEngine(guard_or_chat)
    server = GuardServer(engine, make_config(), count_tokens=hf_token_counter(tiny_model_dir))
    plan = server.plan_chat(request)
    assert [m["role"] for m in plan.job.messages] == ["user", "assistant", "tool", "assistant"]
    assert plan.job.messages[3]["content"] == 'Booking now.\n[tool call] book_flight({"to": "Rome"})'

    strict = tmp_path / "strict-template"
    shutil.copytree(tiny_model_dir, strict, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    for stale in strict.glob("chat_template.json*"):
        stale.unlink()
    (strict / "chat_template.jinja").write_text(
        Path(tiny_model_dir, "chat_template.jinja").read_text().replace(
            "{% for message in messages %}",
            "{% for message in messages %}{% if message['role'] == 'tool' %}"
            "{{ raise_exception('Conversation roles must alternate user/assistant') }}{% endif %}", 1))
    server = GuardServer(engine, make_config(), count_tokens=hf_token_counter(str(strict)))
    with pytest.raises(InvalidInput, match="chat template refuses these messages: Conversation roles must alternate") as info:
        server.plan_chat(request)
    assert info.value.param == "messages"
    assert server.healthy and engine.calls == []
