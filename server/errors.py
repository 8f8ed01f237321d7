"""The OpenAI error envelope and the exception handlers that put every failure into it.

`{"error": {"message", "type", "param", "code"}}` for every non-2xx answer: validation failures are 400 (never
FastAPI's 422) with `param` naming the offending field, unknown routes are 404, internal failures 500. Inside a
stream that already sent its 200 the same object goes out as one SSE event (see `server.sse`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)

INVALID_REQUEST = "invalid_request_error"
SERVER_ERROR = "server_error"


class APIError(Exception):
    """Any failure the client should see; `status` is the HTTP status, the rest fills the envelope."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = INVALID_REQUEST,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, INVALID_REQUEST, param, code)


def model_not_found(model: str) -> APIError:
    return APIError(404, f"The model `{model}` does not exist or you do not have access to it.",
                    INVALID_REQUEST, "model", "model_not_found")


def context_length_exceeded(max_model_len: int, num_prompt: int, num_completion: int, param: str) -> APIError:
    # NOTE: clients (LangChain, LiteLLM) match the substring "maximum context length": keep this wording.
    return bad_request(
        f"This model's maximum context length is {max_model_len} tokens. However, you requested "
        f"{num_prompt + num_completion} tokens ({num_prompt} in the messages, {num_completion} in the "
        "completion). Please reduce the length of the messages or completion.",
        param=param,
        code="context_length_exceeded",
    )


def overloaded(message: str, retry_after_s: int = 1) -> APIError:
    return APIError(503, message, SERVER_ERROR, None, "server_overloaded", {"Retry-After": str(retry_after_s)})


def invalid_api_key() -> APIError:
    return APIError(401, "Incorrect API key provided.", INVALID_REQUEST, None, "invalid_api_key")


def internal_error(message: str = "Internal server error") -> APIError:
    return APIError(500, message, SERVER_ERROR, None, None, {"x-should-retry": "false"})


_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "dict", "list", "none", "bytes", "tuple", "set"})


def format_loc(loc: Sequence[Any]) -> str | None:
    """Pydantic's location tuple -> `messages[0].content`: the body prefix and union-branch tags (`str`,
    `list[ContentPart]`, `function-after[...]`, model class names) are dropped."""
    parts: list[str] = []
    for item in loc:
        if item == "body" and not parts:
            continue
        if isinstance(item, int):
            parts.append(f"[{item}]")
            continue
        text = str(item)
        if text in _TYPE_TAGS or text[:1].isupper() or any(char in text for char in "[]-(),'\""):
            continue
        parts.append(("." if parts else "") + text)
    return "".join(parts) or None


def from_validation_errors(errors: Sequence[Mapping[str, Any]]) -> APIError:
    """The most specific pydantic error (deepest location: inside union branches) becomes the message; `param`
    names its field."""
    if not errors:
        return bad_request("Invalid request")
    first = max(errors, key=lambda error: len(error.get("loc", ())))
    if first.get("type") == "json_invalid":
        return bad_request(f"Invalid JSON body: {first.get('msg', '')}".rstrip(": "))
    param = format_loc(first.get("loc", ()))
    message = str(first.get("msg", "invalid value"))
    return bad_request(f"{param}: {message}" if param else message, param=param)


def from_pydantic(error: ValidationError) -> APIError:
    return from_validation_errors(error.errors(include_url=False))


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return from_validation_errors(exc.errors()).response()

    @app.exception_handler(ValidationError)
    async def _pydantic(_: Request, exc: ValidationError) -> JSONResponse:
        return from_pydantic(exc).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            err = APIError(404, f"Route {request.method} {request.url.path} not found", INVALID_REQUEST)
        elif exc.status_code == 405:
            err = APIError(405, f"Method {request.method} not allowed on {request.url.path}", INVALID_REQUEST)
        else:
            err = APIError(exc.status_code, str(exc.detail), INVALID_REQUEST if exc.status_code < 500 else SERVER_ERROR)
        return err.response()

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return internal_error(f"Internal server error: {type(exc).__name__}").response()
