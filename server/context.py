"""ServingContext: what every route shares (config, tokenizer, engine, metrics) and the admission checks.

Admission (contract section 7): a request is refused with 503 `server_overloaded` + `Retry-After` when the engine
is not ready, the server is draining, or waiting + running completions would exceed `max_queued_requests`
(a request with n completions counts n times). The check runs once before tokenisation (cheap) and again when the
request is handed to the engine, with no `await` in between, so the reservation is atomic on the event loop.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Sequence

from engine.sampling_params import SamplingParams
from server.args import ServerArgs
from server.async_engine import AsyncEngine, RequestGroup
from server.errors import APIError, invalid_api_key, model_not_found, overloaded
from server.metrics import ServerMetrics
from tokenizer.tokenizer import Tokenizer


class ServingContext:
    def __init__(self, args: ServerArgs, tokenizer: Tokenizer, engine: AsyncEngine, metrics: ServerMetrics,
                 max_model_len: int) -> None:
        self.args = args
        self.tokenizer = tokenizer
        self.engine = engine
        self.metrics = metrics
        self.max_model_len = max_model_len
        self.created = int(time.time())
        self.draining = False  # set on SIGTERM: /health 503, new requests 503
        self._api_keys = tuple(key.encode() for key in args.api_keys)
        self._next_child = 0

    # ---- checks (all raise APIError) ------------------------------------------------------------------------

    def check_api_key(self, authorization: str | None) -> None:
        """Bearer key, compared in constant time against every configured key; no keys: anything goes."""
        if not self._api_keys:
            return
        scheme, _, token = (authorization or "").partition(" ")
        offered = token.strip().encode() if scheme.lower() == "bearer" else b""
        matched = False
        for key in self._api_keys:  # NOTE: no early exit, so timing does not tell which key matched
            matched |= hmac.compare_digest(offered, key)
        if not matched:
            raise invalid_api_key()

    def check_model(self, model: str) -> None:
        if model not in self.args.served_model_names:
            raise model_not_found(model)

    def check_admission(self, n: int) -> None:
        reason, message = self._admission_problem(n)
        if reason is not None:
            self.metrics.record_rejection(reason)
            raise overloaded(message)

    def _admission_problem(self, n: int) -> tuple[str | None, str]:
        if self.draining:
            return "draining", "The server is shutting down; retry on another replica."
        if self.engine.is_dead:
            return "engine_dead", "The engine is not running."
        if not self.engine.is_ready:
            return "not_ready", "The model is still loading; retry shortly."
        limit = self.args.max_queued_requests
        if self.engine.num_open_children + n > limit:
            return "queue_full", f"The server is at capacity ({limit} queued or running sequences); retry shortly."
        return None, ""

    # ---- submission -----------------------------------------------------------------------------------------

    def submit(self, request_id: str, prompts: Sequence[Sequence[int]],
               params: Sequence[SamplingParams]) -> RequestGroup:
        """Admission (atomic with the hand-over), then one engine request per completion (its prompt, its params)."""
        self.check_admission(len(params))
        self._next_child += 1
        base = f"{request_id}#{self._next_child}"  # NOTE: unique even if a client reuses its X-Request-Id
        child_ids = [f"{base}-{index}" for index in range(len(params))]
        try:
            return self.engine.add_request_group(child_ids, prompts, params)
        except ValueError as error:
            raise APIError(400, str(error)) from None

    @property
    def model_name(self) -> str:
        return self.args.model_name
