"""The FastAPI app: routes, authentication, body limits, health. Built by `build_app(ctx)`.

Routes (contract section 1): POST /v1/chat/completions, POST /v1/completions, GET /v1/models[/{id}],
POST /tokenize, POST /detokenize (vLLM extras), GET /health (+ /ping), GET /version, GET /metrics.
With API keys configured every route needs one but the probes /health and /ping (and /metrics with
`--metrics-public`). GET /openapi.json and /docs (Swagger UI) describe the API with
its request bodies (`server.openapi`); they need the key too, and `--disable-fastapi-docs` removes them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError

from server.chat_prompt import build_chat_prompt
from server.context import ServingContext
from server.errors import APIError, bad_request, from_pydantic, install_error_handlers
from server.json_body import parse_json_body
from server.metrics import CONTENT_TYPE
from server.logging import RequestRecord
from server.middleware import RequestContextMiddleware, get_record, valid_request_id
from server.openapi import build_openapi
from server.protocol import ChatCompletionRequest, CompletionRequest
from server.serving_chat import ChatServing
from server.serving_completion import CompletionServing, tokenize_prompts
from server.version import version_info

M = TypeVar("M", bound=BaseModel)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 past `limit` bytes (checked on Content-Length, then while reading)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise APIError(413, f"Request body exceeds the limit of {limit} bytes", param=None)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise APIError(413, f"Request body exceeds the limit of {limit} bytes", param=None)
        chunks.append(chunk)
    return b"".join(chunks)


async def parse_request(request: Request, model: type[M], limit: int) -> tuple[M, dict[str, Any]]:
    """(validated model, decoded JSON object); malformed JSON and invalid fields are 400 naming the field."""
    raw = parse_json_body(await read_body(request, limit))
    if not isinstance(raw, dict):
        raise bad_request("The request body must be a JSON object")
    try:
        return model.model_validate(raw), raw
    except ValidationError as error:
        raise from_pydantic(error) from None


def health_status(ctx: ServingContext) -> tuple[int, str]:
    engine = ctx.engine
    if engine.is_dead:
        return 503, "engine loop died"
    if not engine.is_ready:
        return 503, "loading"
    if ctx.draining:
        return 503, "draining"
    if engine.heartbeat_age() > ctx.args.heartbeat_timeout:
        return 503, f"engine heartbeat stale ({engine.heartbeat_age():.1f}s)"
    return 200, "ok"


def add_docs_routes(app: FastAPI, auth: Any, version: str) -> None:
    """GET /openapi.json and /docs, behind the API key like every route but the probes."""
    def openapi_schema() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app, version)
        return app.openapi_schema

    app.openapi = openapi_schema  # type: ignore[method-assign]

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(request: Request) -> JSONResponse:
        auth(request)
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> Response:
        auth(request)
        return get_swagger_ui_html(openapi_url="/openapi.json", title="glm-serve API")


def build_app(ctx: ServingContext) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        ctx.engine.start(asyncio.get_running_loop())
        yield
        await asyncio.to_thread(ctx.engine.shutdown)

    app = FastAPI(title="glm-serve", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.ctx = ctx
    install_error_handlers(app)
    chat, completion = ChatServing(ctx), CompletionServing(ctx)
    limit = ctx.args.max_request_body_bytes
    info = version_info(ctx.args.model)

    def auth(request: Request) -> None:
        ctx.check_api_key(request.headers.get("authorization"))

    def record_for(request: Request, body_request_id: str | None) -> RequestRecord:
        """The request's log record; a `request_id` body field replaces the header's (or generated) id."""
        record = get_record(request.scope)
        if body_request_id is not None:
            valid = valid_request_id(body_request_id)
            if valid is None:
                raise bad_request("request_id must be 1-128 characters of [A-Za-z0-9._:-]", "request_id")
            record.request_id = valid
        return record

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        auth(request)
        body, raw = await parse_request(request, ChatCompletionRequest, limit)
        return await chat.create(body, raw, request, record_for(request, body.request_id))

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        auth(request)
        body, _ = await parse_request(request, CompletionRequest, limit)
        return await completion.create(body, request, record_for(request, body.request_id))

    def model_card(name: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": ctx.created, "owned_by": "glm-serve",
                "root": ctx.args.model, "parent": None, "max_model_len": ctx.max_model_len}

    @app.get("/v1/models")
    async def list_models(request: Request) -> JSONResponse:
        auth(request)
        return JSONResponse({"object": "list", "data": [model_card(name) for name in ctx.args.served_model_names]})

    @app.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str, request: Request) -> JSONResponse:
        auth(request)
        ctx.check_model(model_id)
        return JSONResponse(model_card(model_id))

    @app.post("/tokenize")
    async def tokenize(request: Request) -> JSONResponse:
        auth(request)
        raw = parse_json_body(await read_body(request, limit))
        if not isinstance(raw, dict):
            raise bad_request("The request body must be a JSON object")
        ctx.check_model(str(raw.get("model", ctx.model_name)))
        if "messages" in raw:
            try:
                chat_request = ChatCompletionRequest.model_validate({"model": ctx.model_name, **raw})
            except ValidationError as error:
                raise from_pydantic(error) from None
            if chat_request.chat_template is not None and not ctx.args.allow_custom_chat_template:
                raise bad_request("custom chat templates are disabled on this server", "chat_template")
            prompt = await asyncio.to_thread(build_chat_prompt, chat_request, raw, ctx.tokenizer,
                                             ctx.args.default_chat_template_kwargs)
            tokens = prompt.token_ids
        elif isinstance(raw.get("prompt"), str):
            tokens = (await asyncio.to_thread(tokenize_prompts, raw["prompt"], ctx.tokenizer))[0]
        else:
            raise bad_request("tokenize needs `prompt` (a string) or `messages`", "prompt")
        return JSONResponse({"count": len(tokens), "max_model_len": ctx.max_model_len, "tokens": tokens})

    @app.post("/detokenize")
    async def detokenize(request: Request) -> JSONResponse:
        auth(request)
        raw = parse_json_body(await read_body(request, limit))
        tokens = raw.get("tokens") if isinstance(raw, dict) else None
        vocab = ctx.tokenizer.vocab_size
        if not isinstance(tokens, list) or not all(isinstance(t, int) and 0 <= t < vocab for t in tokens):
            raise bad_request(f"tokens must be a list of token ids in [0, {vocab})", "tokens")
        return JSONResponse({"prompt": ctx.tokenizer.decode(tokens, skip_special_tokens=False)})

    @app.get("/health")
    async def health() -> Response:
        status, state = health_status(ctx)
        if status == 200:
            return JSONResponse({"status": state})
        return APIError(503, f"Not ready: {state}", "server_error", None, "server_overloaded",
                        {"Retry-After": "1"}).response()

    for method in ("GET", "POST"):  # one operation id per method (the OpenAPI document needs them unique)
        app.add_api_route("/ping", health, methods=[method], operation_id=f"ping_{method.lower()}")

    @app.get("/version")
    async def version(request: Request) -> JSONResponse:
        auth(request)  # NOTE: it names the build and the model revision: not for anonymous callers
        return JSONResponse(info)

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        if not ctx.args.metrics_public:
            auth(request)
        return Response(ctx.metrics.render(), media_type=CONTENT_TYPE)

    if not ctx.args.disable_fastapi_docs:
        add_docs_routes(app, auth, info["version"])
    if ctx.args.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(ctx.args.cors_origins), allow_methods=["*"],
                           allow_headers=["*"], allow_credentials=False)
    app.add_middleware(RequestContextMiddleware, metrics=ctx.metrics)
    return app
