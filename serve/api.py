"""The guard's HTTP API (FastAPI): routes, auth, body limits and the error contract.

Every error is JSON {"error": {message, type, param, code}}: 422 names the bad field, 413 the
limit, 401 asks for a bearer token, 503 carries Retry-After, 504 reports the deadline. Input can
never reach the catch-all 500 (the tests fuzz for it). Built per replica by `create_api(service)`
so the same app runs under Serve and in-process with FastAPI's TestClient.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from serve.errors import EngineUnavailable, GuardError, InvalidInput, PayloadTooLarge
from serve.json_limits import json_shape_problem
from serve.schemas import (
    ChatCompletionRequest,
    ChatCompletionResponse,
    ErrorResponse,
    GuardBatchRequest,
    GuardBatchResponse,
    GuardRequest,
    GuardResponse,
    GuardStreamCheck,
    GuardStreamRequest,
    ModelCard,
    ModelList,
)
from serve.service import GuardService

log = logging.getLogger(__name__)

_ERRORS = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in (
        (401, "Missing or wrong bearer token (when the server has one)."),
        (404, "Unknown model (chat completions)."),
        (413, "Input over a limit; the message names it."),
        (422, "Invalid JSON or field; `param` names the field."),
        (503, "Overloaded or engine unavailable; see Retry-After."),
        (504, "The request's deadline passed."),
    )
}


def error_response(exc: GuardError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


def _field(loc: tuple) -> str | None:
    parts = [p for p in loc if p not in ("body",)]
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or None


def validation_error(errors: list[dict[str, Any]]) -> GuardError:
    """pydantic errors -> 422 naming the first bad field (a value outside the OpenAPI schema's own bounds
    is a schema violation; 413 is kept for the server's configured limits and the body size)."""
    first = errors[0] if errors else {"loc": (), "msg": "invalid request", "type": "value_error"}
    field = _field(tuple(first.get("loc", ())))
    # A union of types (str | list) reports one error per branch; the location names the branch type.
    message = first.get("msg", "invalid value")
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    text = f"{field}: {message}" if field else message
    if len(errors) > 1:
        text += f" (and {len(errors) - 1} more error{'s' if len(errors) > 2 else ''})"
    return InvalidInput(text, field)


class BodyLimit:
    """Refuse bodies over `max_bytes` with 413 before they are read into memory, and bodies whose JSON
    shape no parser should see (serve.json_limits: nesting depth, number length) with 422 (pure ASGI)."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        too_large = PayloadTooLarge(f"request body is over the limit of {self.max_bytes} bytes", "body")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                size = -1
            if size < 0:
                return await error_response(InvalidInput("invalid Content-Length header", "body"))(scope, receive, send)
            if size > self.max_bytes:
                return await error_response(too_large)(scope, receive, send)
        # Read and count (a declared length may lie); never buffer more than the limit.
        chunks, total, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return await self.app(scope, _replay([message], receive), send)
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_bytes:
                return await error_response(too_large)(scope, receive, send)
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        problem = json_shape_problem(body) if body else None
        if problem:
            return await error_response(InvalidInput(problem, "body"))(scope, receive, send)
        return await self.app(scope, _replay([{"type": "http.request", "body": body, "more_body": False}], receive), send)


def _replay(messages, receive_more):
    """The body already read, then the connection's own receive: a streaming response listens on it
    for the client going away (a made-up disconnect would end every stream at its first chunk)."""
    queue = list(messages)

    async def receive():
        if queue:
            return queue.pop(0)
        return await receive_more()

    return receive


def _json_object(raw: bytes) -> dict:
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"body is not valid JSON: {exc}", "body") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"body must be a JSON object, not {type(data).__name__}", "body")
    return data


def _validated(model, data: dict):
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc.errors(include_url=False)) from None


def _parse_guard_body(raw: bytes) -> GuardRequest | GuardBatchRequest:
    data = _json_object(raw)
    return _validated(GuardBatchRequest if "inputs" in data else GuardRequest, data)


def _parse_chat_body(raw: bytes) -> ChatCompletionRequest:
    return _validated(ChatCompletionRequest, _json_object(raw))


def create_api(service: GuardService, metrics_source=None) -> FastAPI:
    """The app of one replica (or of the ingress): error contract, probes, the guard's routes, the
    exact OpenAPI document, and the body limit in front of everything."""
    app = FastAPI(
        title="reasonguard",
        version="0.1.0",
        description="Dual-mode reasoning safety guard (think / no_think) with calibrated P(harmful) scores, "
        "plus an OpenAI-compatible chat endpoint for the Nemotron-style guard prompt.",
    )
    install_error_contract(app)
    add_probe_routes(app, service, metrics_source)
    add_guard_routes(app, service)
    if service.config.operations.playground:
        add_playground_route(app)
    app.openapi = exact_openapi(app, service.config)  # type: ignore[method-assign]
    app.add_middleware(BodyLimit, max_bytes=service.config.limits.max_body_bytes)
    return app


def install_error_contract(app: FastAPI) -> None:
    """Every error a client can see as the documented JSON body, the unexpected ones included."""

    @app.exception_handler(GuardError)
    async def _guard_error(_: Request, exc: GuardError):
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError):
        errors = list(exc.errors())
        if any(e.get("type") == "json_invalid" for e in errors):
            return error_response(InvalidInput("body is not valid JSON", "body"))
        return error_response(validation_error(errors))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException):
        if exc.status_code == 400:  # FastAPI could not decode the body (e.g. bytes that are not UTF-8)
            return error_response(InvalidInput(f"body is not valid JSON: {exc.detail}", "body"))
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        err = GuardError(str(exc.detail), headers=dict(exc.headers or {}))  # 405 keeps its Allow header
        err.status, err.kind = exc.status_code, kind
        return error_response(err)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception):
        log.exception("unexpected error")  # the request body is not logged: it is user content
        err = GuardError("internal error")
        return error_response(err)


def add_probe_routes(app: FastAPI, service: GuardService, metrics_source=None) -> None:
    """Liveness, readiness and (where a source is given) Prometheus metrics: no auth, no body."""
    config = service.config

    @app.get("/healthz", summary="Liveness: the replica's HTTP server answers.")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness: the engine is loaded and healthy.", responses={503: _ERRORS[503]})
    async def readyz():
        if not service.server.healthy:
            return JSONResponse(
                {"status": "unhealthy"}, status_code=503, headers={"Retry-After": str(max(1, round(config.replica.retry_after_s)))}
            )
        return {"status": "ready", "model": service.server.model_name, "pending": service.pending}

    if metrics_source is not None:
        @app.get("/metrics", summary="Prometheus metrics (Ray's endpoint of this replica's node: Serve's and ours).",
                 response_class=PlainTextResponse, responses={503: _ERRORS[503]})
        async def metrics():
            try:
                text = await metrics_source()
            except Exception as exc:  # noqa: BLE001 - an unreachable exporter is an operator's 503, not a 500
                raise EngineUnavailable(f"metrics exporter unreachable: {type(exc).__name__}", 5) from None
            return PlainTextResponse(text, media_type="text/plain; version=0.0.4")


def add_guard_routes(app: FastAPI, service: GuardService) -> None:
    """/v1/models, /v1/guard and /v1/chat/completions; auth is checked before the body is read (an
    unauthenticated caller learns nothing about the body: 401, not 422)."""

    def auth(request: Request) -> None:
        service.authorize(request.headers.get("authorization"))

    proxy = None
    if service.config.moderation is not None:
        from serve.moderation import ModeratingProxy

        proxy = ModeratingProxy(service, service.config.moderation)

    @app.get("/v1/models", response_model=ModelList, responses={401: _ERRORS[401]})
    async def models(request: Request):
        auth(request)
        cards = [ModelCard(id=service.server.model_name, created=service.server.created)]
        if service.config.moderation is not None:  # the upstream LLM, reached through the moderating proxy
            cards.append(ModelCard(id=service.config.moderation.upstream.model, created=service.server.created,
                                   owned_by="upstream (moderated by reasonguard)"))
        return ModelList(data=cards)

    @app.post(
        "/v1/guard",
        response_model=GuardResponse | GuardBatchResponse,
        summary="Judge one conversation, or a batch of them (`inputs`).",
        responses={k: _ERRORS[k] for k in (401, 413, 422, 503, 504)},
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"oneOf": [{"$ref": "#/components/schemas/GuardRequest"}, {"$ref": "#/components/schemas/GuardBatchRequest"}]}
                    }
                },
            }
        },
    )
    async def guard(request: Request):
        auth(request)
        body = _parse_guard_body(await request.body())
        return await service.guard(body)

    @app.post(
        "/v1/guard/stream",
        response_model=GuardStreamCheck,
        summary="Check a response while it streams from elsewhere: send the response so far; the answer says release, wait or cut.",
        responses={k: _ERRORS[k] for k in (401, 413, 422, 503, 504)},
        openapi_extra={"requestBody": {"required": True, "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/GuardStreamRequest"}}}}},
    )
    async def guard_stream(request: Request):
        from serve.moderation import check_pushed_stream

        auth(request)
        body = _validated(GuardStreamRequest, _json_object(await request.body()))
        return await check_pushed_stream(service, body, service.config.moderation)

    @app.post(
        "/v1/chat/completions",
        response_model=ChatCompletionResponse,
        summary="OpenAI-compatible chat completion: send the rendered guard prompt as the user message.",
        responses={k: _ERRORS[k] for k in (401, 404, 413, 422, 503, 504)},
        openapi_extra={"requestBody": {"required": True, "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/ChatCompletionRequest"}}}}},
    )
    async def chat_completions(request: Request):
        auth(request)
        raw = await request.body()
        if proxy is not None:
            data = _json_object(raw)
            if proxy.serves(data):
                return await proxy.handle(data)
        return await service.chat_completion(_parse_chat_body(raw))


PLAYGROUND_HTML = Path(__file__).with_name("playground.html")


def add_playground_route(app: FastAPI) -> None:
    """GET /playground: one static page (no build step, no external assets) that calls /v1/guard. The
    page needs no token to load (a browser cannot send one on navigation and the page holds no data);
    every check it makes is an API call with the token the user types, under the API's own auth."""
    html = PLAYGROUND_HTML.read_text(encoding="utf-8")
    headers = {"Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                                          "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
               "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}

    @app.get("/playground", include_in_schema=False)
    async def playground():
        return HTMLResponse(html, headers=headers)


def _server_limits(config) -> dict[str, dict[str, int]]:
    """Request fields bounded by this server's configuration, not by the models: (schema, field) -> maximum."""
    limits = config.limits
    return {"GuardRequest": {"reasoning_budget": limits.max_reasoning_tokens},
            "GuardBatchRequest": {"reasoning_budget": limits.max_reasoning_tokens},
            "GuardStreamRequest": {"reasoning_budget": limits.max_reasoning_tokens},
            "ChatCompletionRequest": {"n": limits.max_choices, "max_tokens": limits.max_completion_tokens,
                                      "max_completion_tokens": limits.max_completion_tokens}}


def _set_maximum(prop: dict, maximum: int) -> None:
    for option in [prop, *prop.get("anyOf", [])]:
        if option.get("type") == "integer":
            option["maximum"] = min(option.get("maximum", maximum), maximum)


def exact_openapi(app: FastAPI, config=None):
    """The OpenAPI document with the request models' own schemas (the routes read raw bodies, so
    FastAPI cannot infer them), bounded by this server's configured limits: what clients and fuzzers
    generate requests from, and what the server takes."""

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in (GuardRequest, GuardBatchRequest, GuardStreamRequest, ChatCompletionRequest):
            spec = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(spec.pop("$defs", {}))
            components[model.__name__] = spec
        if config is not None:
            for name, fields in _server_limits(config).items():
                for field, maximum in fields.items():
                    prop = components.get(name, {}).get("properties", {}).get(field)
                    if prop is not None:
                        _set_maximum(prop, maximum)
        app.openapi_schema = schema
        return schema

    return openapi
