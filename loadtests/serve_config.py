"""Everything `bench_serve` needs besides the dataset, validated once (bad values raise naming the flag)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from loadtests.metrics import GOODPUT_METRICS, LATENCY_METRICS
from loadtests.request_func import BACKENDS


@dataclass(frozen=True)
class ServeBenchConfig:
    # openai (POST /v1/completions body) or openai-chat (POST /v1/chat/completions body).
    backend: str = "openai"
    # Scheme, host and port, without the route: http://127.0.0.1:8000 (a trailing /v1 is tolerated).
    base_url: str = "http://127.0.0.1:8000"
    # Generation route appended to base_url.
    endpoint: str = "/v1/completions"
    # Served model name sent in every body; None = the first id of GET /v1/models.
    model: str | None = None
    # Requests per second of the arrival process (inf = all at once) and the gamma shape of the gaps.
    request_rate: float = math.inf
    burstiness: float = 1.0
    # At most this many requests in flight (None = unbounded); a sweep runs once per value instead.
    max_concurrency: int | None = None
    sweep_concurrency: tuple[int, ...] | None = None
    # Requests sent (and not measured) before the run, with the first sample, under the same concurrency cap.
    num_warmups: int = 0
    # Seed of the arrival schedule (the dataset has its own).
    seed: int = 0
    ignore_eos: bool = False
    temperature: float = 0.0
    # Sent as `Authorization: Bearer <key>` when set.
    api_key: str | None = None
    # Fields merged into every request body (--extra-body JSON).
    extra_body: dict[str, Any] = field(default_factory=dict)
    # Which latency metrics get percentiles in the printout/result, and which percentiles.
    percentile_metrics: tuple[str, ...] = ("ttft", "tpot", "itl", "e2el")
    metric_percentiles: tuple[float, ...] = (50.0, 90.0, 99.0)
    # --goodput SLOs in milliseconds by metric name (empty = no goodput figure).
    goodput_slos_ms: dict[str, float] = field(default_factory=dict)
    # Upper bound on one request, connect to [DONE], seconds.
    request_timeout_s: float = 600.0
    # How long to keep retrying the first request while the server refuses connections (0 = no check).
    ready_check_timeout_s: float = 600.0
    disable_tqdm: bool = False

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {self.base_url!r}")
        if not self.endpoint.startswith("/"):
            raise ValueError(f"endpoint must start with '/', got {self.endpoint!r}")
        if not self.request_rate > 0:
            raise ValueError(f"request_rate must be > 0 (inf = all at once), got {self.request_rate}")
        if not (self.burstiness > 0 and math.isfinite(self.burstiness)):
            raise ValueError(f"burstiness must be a positive number, got {self.burstiness}")
        if self.max_concurrency is not None and self.max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {self.max_concurrency}")
        if self.sweep_concurrency is not None and (
            not self.sweep_concurrency or min(self.sweep_concurrency) < 1
        ):
            raise ValueError(f"sweep_concurrency must list integers >= 1, got {self.sweep_concurrency}")
        if self.num_warmups < 0:
            raise ValueError(f"num_warmups must be >= 0, got {self.num_warmups}")
        if not self.temperature >= 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        unknown = set(self.percentile_metrics) - set(LATENCY_METRICS)
        if unknown:
            raise ValueError(f"percentile_metrics: unknown {sorted(unknown)}; choose from {LATENCY_METRICS}")
        if any(not 0 < p <= 100 for p in self.metric_percentiles):
            raise ValueError(f"metric_percentiles must be in (0, 100], got {self.metric_percentiles}")
        if set(self.goodput_slos_ms) - set(GOODPUT_METRICS):
            raise ValueError(f"goodput_slos_ms keys must be in {GOODPUT_METRICS}, got {sorted(self.goodput_slos_ms)}")
        if not self.request_timeout_s > 0:
            raise ValueError(f"request_timeout_s must be > 0, got {self.request_timeout_s}")
        if not self.ready_check_timeout_s >= 0:
            raise ValueError(f"ready_check_timeout_s must be >= 0, got {self.ready_check_timeout_s}")

    @property
    def api_url(self) -> str:
        """base_url + endpoint, without a doubled /v1 when base_url is an OpenAI-style ".../v1" URL."""
        base = self.base_url.rstrip("/")
        if base.endswith("/v1") and self.endpoint.startswith("/v1/"):
            base = base[: -len("/v1")]
        return base + self.endpoint

    @property
    def server_root(self) -> str:
        """Where /v1/models and /metrics live."""
        base = self.base_url.rstrip("/")
        return base[: -len("/v1")] if base.endswith("/v1") else base

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
