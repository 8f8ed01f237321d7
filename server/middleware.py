"""RequestContextMiddleware: request id, HTTP metrics and the per-request JSON log line (pure ASGI).

Pure ASGI rather than Starlette's BaseHTTPMiddleware: it must not buffer streamed bodies or get between the app
and `receive` (disconnect detection relies on it).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.errors import internal_error
from server.logging import RequestRecord, log_request
from server.metrics import ServerMetrics

logger = logging.getLogger(__name__)
REQUEST_ID_HEADER = b"x-request-id"
MAX_REQUEST_ID_LEN = 128
_UNLOGGED_PATHS = frozenset({"/health", "/ping", "/metrics"})  # probes and scrapes: no per-request line
_SAFE_ID = re.compile(r"[A-Za-z0-9._:\-]{1,%d}" % MAX_REQUEST_ID_LEN)


def valid_request_id(value: str | None) -> str | None:
    """An incoming id is kept only when it is short and made of safe characters (it reaches logs and headers)."""
    return value if value is not None and _SAFE_ID.fullmatch(value) else None


def new_request_id() -> str:
    return uuid.uuid4().hex


def get_record(scope: Scope) -> RequestRecord:
    record: RequestRecord = scope["state"]["record"]
    return record


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, REQUEST_ID_HEADER)
        request_id = valid_request_id(incoming) or new_request_id()
        client = scope.get("client")
        record = RequestRecord(request_id=request_id, method=scope["method"], path=scope["path"],
                               client_ip=client[0] if client else None)
        scope.setdefault("state", {})["record"] = record
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != REQUEST_ID_HEADER]
                headers.append((REQUEST_ID_HEADER, record.request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as error:  # noqa: BLE001 - a bug must still answer in the envelope, with the id
            logger.exception("unhandled error on %s %s", scope["method"], scope["path"])
            record.error = type(error).__name__
            if record.status:  # the response already started: nothing more can be sent
                raise
            await internal_error(f"Internal server error: {type(error).__name__}").response()(
                scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            handler = getattr(route, "path", None) or "none"
            self.metrics.record_http(handler, scope["method"], record.status or 500, time.perf_counter() - started)
            if scope["path"] not in _UNLOGGED_PATHS:
                log_request(record)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            try:
                return value.decode("latin-1")
            except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
                return None
    return None


def client_header(scope: Scope, name: str) -> Any:
    return _header(scope, name.lower().encode())
