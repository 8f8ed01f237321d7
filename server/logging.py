"""One JSON line per finished HTTP request (logger `glm_serve.requests`), and the process's log setup.

`RequestRecord` is filled while the request runs (the serving code adds token counts and timings) and written
once by the middleware when the response is over, with the HTTP status. It never holds the API key or any
prompt/completion text.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import asdict, dataclass

REQUEST_LOGGER = "glm_serve.requests"
request_logger = logging.getLogger(REQUEST_LOGGER)


@dataclass(slots=True)
class RequestRecord:
    request_id: str
    method: str
    path: str
    client_ip: str | None
    status: int = 0
    model: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    reasoning_tokens: int | None = None
    cached_tokens: int | None = None
    n: int | None = None
    stream: bool | None = None
    finish_reason: str | None = None  # the first choice's (stop/length/tool_calls/abort/error)
    ttft_ms: float | None = None
    queue_ms: float | None = None
    e2e_ms: float | None = None
    spec_accepted: int | None = None  # draft tokens accepted, summed over the choices (speculation on only)
    spec_drafted: int | None = None  # draft tokens verified, likewise
    error: str | None = None  # the error code or type, never the message text of a prompt

    def to_json(self) -> str:
        fields = {key: value for key, value in asdict(self).items() if value is not None}
        return json.dumps({"event": "request", **fields}, ensure_ascii=False, separators=(",", ":"))


def log_request(record: RequestRecord) -> None:
    if request_logger.isEnabledFor(logging.INFO):
        request_logger.info(record.to_json())


def configure_logging(level: str) -> None:
    """Plain lines on stderr; request lines are bare JSON (machine-readable) on the same stream."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.handlers[:] = [handler]
    json_handler = logging.StreamHandler(sys.stderr)
    json_handler.setFormatter(logging.Formatter("%(message)s"))
    request_logger.handlers[:] = [json_handler]
    request_logger.propagate = False
    request_logger.setLevel(level.upper())
