"""The OpenAPI document served at /openapi.json (and rendered at /docs): FastAPI's routes plus the request bodies.

The POST routes read and validate their bodies themselves (size limit first, then pydantic, errors as 400
envelopes), so FastAPI cannot see their body models; `build_openapi` adds them, the error envelope of every
documented failure, and the bearer-key security scheme. Schemathesis fuzzes the server against this document.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from server.protocol import ChatCompletionRequest, CompletionRequest

REF = "#/components/schemas/{model}"
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["message", "type", "param", "code"], "properties": {
        "message": {"type": "string"}, "type": {"type": "string"},
        "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}},
}
TOKENIZE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"model": {"type": "string"}, "prompt": {"type": "string"},
                   "messages": {"type": "array", "items": {"$ref": REF.format(model="ChatMessage")}}},
}
DETOKENIZE_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["tokens"],
    "properties": {"model": {"type": "string"}, "tokens": {"type": "array", "items": {"type": "integer"}}},
}
# status -> description of the failures every POST route may answer with (all in the error envelope)
POST_ERRORS = {"400": "invalid request", "401": "missing or wrong API key", "404": "unknown model",
               "413": "body over --max-request-body-bytes", "503": "overloaded, loading or draining (Retry-After)"}
GET_ERRORS = {"401": "missing or wrong API key", "404": "unknown model or route"}


def build_openapi(app: FastAPI, version: str) -> dict[str, Any]:
    schema = get_openapi(title="glm-serve", version=version, routes=app.routes,
                         description="OpenAI-compatible server for GLM-4.5-family models.")
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["ErrorResponse"] = ERROR_SCHEMA
    _add_model(schemas, ChatCompletionRequest)
    bodies = {"/v1/chat/completions": _ref(ChatCompletionRequest), "/v1/completions": _ref(CompletionRequest),
              "/tokenize": TOKENIZE_SCHEMA, "/detokenize": DETOKENIZE_SCHEMA}
    _add_model(schemas, CompletionRequest)
    paths = schema.get("paths", {})
    for path, body in bodies.items():
        if "post" in paths.get(path, {}):
            paths[path]["post"]["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    for path, operations in paths.items():
        for method, operation in operations.items():
            errors = POST_ERRORS if method == "post" else GET_ERRORS
            if path in ("/health", "/ping"):
                errors = {"503": "not ready, draining or the engine is down"}
            for status, description in errors.items():
                operation.setdefault("responses", {})[status] = {
                    "description": description,
                    "content": {"application/json": {"schema": {"$ref": REF.format(model="ErrorResponse")}}}}
    components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    return schema


def _add_model(schemas: dict[str, Any], model: type[BaseModel]) -> None:
    body = model.model_json_schema(ref_template=REF)
    schemas.update(body.pop("$defs", {}))
    schemas[model.__name__] = body


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}
