"""A scripted OpenAI-compatible upstream LLM for the moderating proxy's tests."""

from __future__ import annotations

import asyncio
import json

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from processes import serve_app  # noqa: F401 - the tests take it from here too

BENIGN = ("Bread needs flour, water, salt and yeast. Mix them and knead the dough for ten minutes. "
          "Let it rise for an hour, shape it, and bake it until the crust is brown.")
HARMFUL = ("Sure. First you gather the parts. Then you wire the detonator to the battery and close the case. "
           "Finally you hide it where nobody looks.")


class ScriptedUpstream:
    """An OpenAI-compatible server streaming `text` word by word (`delay_s` apart); records each request
    and whether its stream was abandoned by the client before the end."""

    def __init__(self) -> None:
        self.text = BENIGN
        self.delay_s = 0.01
        self.requests: list[dict] = []
        self.abandoned = 0
        self.completed = 0
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def chat(request: Request):
            body = await request.json()
            self.requests.append(body)
            if body.get("model") != "upstream-llm":
                return JSONResponse({"error": {"message": "no such model", "type": "not_found"}}, status_code=404)
            words = [w + " " for w in self.text.split(" ")]
            if not body.get("stream"):
                return {"id": "x", "object": "chat.completion", "created": 0, "model": "upstream-llm",
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(words)},
                                     "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 5, "completion_tokens": len(words), "total_tokens": 5 + len(words)}}

            async def events():
                sent = 0
                try:
                    for word in words:
                        await asyncio.sleep(self.delay_s)
                        chunk = {"choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]}
                        yield f"data: {json.dumps(chunk)}\n\n"
                        sent += 1
                    yield 'data: {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}\n\n'
                    yield "data: [DONE]\n\n"
                    self.completed += 1
                finally:
                    if sent < len(words):
                        self.abandoned += 1

            return StreamingResponse(events(), media_type="text/event-stream")

        self.app = app
