"""Server-sent events in the shape the openai client reads (contract section 5).

One `data: <json>` line plus a blank line per event, no `event:` lines; `: ping` comments as keep-alives; the
stream ends with `data: [DONE]`. JSON is compact and keeps non-ASCII text as is (UTF-8).
"""

from __future__ import annotations

import json
from typing import Any

SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
}
MEDIA_TYPE = "text/event-stream"
DONE = b"data: [DONE]\n\n"
PING = b": ping\n\n"


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def event(obj: Any) -> bytes:
    return f"data: {dumps(obj)}\n\n".encode()


def error_event(body: dict[str, Any]) -> bytes:
    """An error after the 200 went out: `{"error": {...}}` as one event (the caller then sends DONE)."""
    return event(body)
