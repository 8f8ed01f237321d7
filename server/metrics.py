"""Prometheus metrics under vLLM V1's names, types, labels and buckets (contract section 8).

Every engine metric carries `model_name` (the primary served name) and `engine` ("0"). Counters are declared
without `_total`; prometheus_client exposes `<name>_total`. The registry belongs to one `ServerMetrics` (not the
process-global one), so several apps can live in one process (tests).

Thread safety: prometheus_client metrics are thread-safe; the engine thread updates the engine gauges and
counters, the event loop the per-request histograms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
                40.0, 80.0, 160.0, 640.0, 2560.0)
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
               80.0)
LATENCY_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
                   480.0, 960.0, 1920.0, 7680.0)
ITERATION_TOKEN_BUCKETS = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)
N_BUCKETS = (1, 2, 5, 10, 20)
HTTP_BUCKETS = (0.1, 0.5, 1.0)
FINISHED_REASONS = ("stop", "length", "abort", "error")
CONTENT_TYPE = CONTENT_TYPE_LATEST


def one_two_five_buckets(max_value: int) -> list[int]:
    """1, 2, 5, 10, 20, 50, ... up to max_value (vLLM's build_1_2_5_buckets)."""
    buckets, exponent = [], 0
    while True:
        for mantissa in (1, 2, 5):
            value = mantissa * 10**exponent
            if value > max_value:
                return buckets
            buckets.append(value)
        exponent += 1


@dataclass(frozen=True, slots=True)
class FinishedRequestStats:
    """One finished request (all n completions) as the metrics see it; times in seconds."""

    finished_reason: str  # stop / length / abort / error (the first completion's, abort/error win)
    num_prompt_tokens: int
    num_generation_tokens: int  # all completions together
    max_generation_tokens: int  # the longest completion
    max_tokens_param: int  # the resolved output cap
    n: int
    e2e: float  # arrival -> last token
    ttft: float | None  # arrival -> first token; None when no token came
    queue: float | None  # arrival -> first scheduled (None when the engine does not report it)
    prefill: float | None  # first scheduled -> first token
    decode: float | None  # first token -> last token
    inference: float | None  # first scheduled -> last token
    time_per_output_token: float | None  # decode / (tokens - 1) of the longest completion


@dataclass(frozen=True, slots=True)
class EngineStepStats:
    """What one engine step changed; cumulative engine counters are turned into deltas by the caller."""

    num_running: int
    num_waiting: int
    kv_cache_usage: float  # 0..1
    num_scheduled_tokens: int  # tokens computed this step (0: no step ran)
    num_prompt_tokens: int = 0  # prompt tokens of requests whose first token came this step (delta)
    num_cached_prompt_tokens: int = 0  # of those, tokens served by the prefix cache (delta)
    num_generation_tokens: int = 0  # tokens emitted this step (delta)
    num_preemptions: int = 0  # delta
    prefix_caching: bool = True  # prefix-cache queries/hits are counted only when the cache is on
    spec_num_drafts: int = 0  # delta
    spec_num_draft_tokens: int = 0  # delta
    spec_num_accepted_tokens: int = 0  # delta
    spec_accepted_per_pos: tuple[int, ...] = ()  # delta per draft position


class ServerMetrics:
    def __init__(self, model_name: str, max_model_len: int, engine: str = "0") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._labels = {"model_name": model_name, "engine": engine}
        names = ("model_name", "engine")
        r = self.registry

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, names, registry=r).labels(**self._labels)

        def counter(name: str, doc: str) -> Counter:
            return Counter(name, doc, names, registry=r).labels(**self._labels)

        def histogram(name: str, doc: str, buckets: Sequence[float]) -> Histogram:
            return Histogram(name, doc, names, buckets=buckets, registry=r).labels(**self._labels)

        self.num_requests_running = gauge("vllm:num_requests_running", "Number of requests in the running batch.")
        self.num_requests_waiting = gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.")
        self.kv_cache_usage = gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.")
        self.prompt_tokens = counter("vllm:prompt_tokens", "Number of prefill tokens processed.")
        self.generation_tokens = counter("vllm:generation_tokens", "Number of generation tokens processed.")
        self.prompt_tokens_cached = counter("vllm:prompt_tokens_cached", "Prompt tokens served by the prefix cache.")
        self.num_preemptions = counter("vllm:num_preemptions", "Cumulative number of preemptions.")
        self.prefix_cache_queries = counter("vllm:prefix_cache_queries", "Prefix cache queries, in tokens.")
        self.prefix_cache_hits = counter("vllm:prefix_cache_hits", "Prefix cache hits, in tokens.")
        self.spec_num_drafts = counter("vllm:spec_decode_num_drafts", "Number of spec decoding drafts.")
        self.spec_num_draft_tokens = counter("vllm:spec_decode_num_draft_tokens", "Number of draft tokens.")
        self.spec_num_accepted_tokens = counter("vllm:spec_decode_num_accepted_tokens", "Accepted draft tokens.")
        self._spec_per_pos = Counter("vllm:spec_decode_num_accepted_tokens_per_pos",
                                     "Accepted draft tokens per draft position.", (*names, "position"), registry=r)
        self._success = Counter("vllm:request_success", "Count of successfully processed requests.",
                                (*names, "finished_reason"), registry=r)
        for reason in FINISHED_REASONS:  # NOTE: pre-create the series so dashboards see zeros, not gaps
            self._success.labels(**self._labels, finished_reason=reason)
        ProcessCollector(registry=r)  # process_resident_memory_bytes etc., as vLLM's default registry has
        self._cache_config = Gauge("vllm:cache_config_info", "Information of the KV cache (value 1).",
                                   ("block_size", "num_gpu_blocks"), registry=r)
        self.admission_rejections = Counter("vllm:admission_rejections", "Requests refused by admission limits.",
                                            ("reason",), registry=r)
        self.ttft = histogram("vllm:time_to_first_token_seconds", "Time to first token in seconds.", TTFT_BUCKETS)
        self.itl = histogram("vllm:inter_token_latency_seconds", "Inter-token latency in seconds.", ITL_BUCKETS)
        self.tpot = histogram("vllm:request_time_per_output_token_seconds", "Time per output token in seconds.",
                              ITL_BUCKETS)
        self.e2e = histogram("vllm:e2e_request_latency_seconds", "End-to-end request latency.", LATENCY_BUCKETS)
        self.queue_time = histogram("vllm:request_queue_time_seconds", "Time in the waiting queue.", LATENCY_BUCKETS)
        self.inference_time = histogram("vllm:request_inference_time_seconds", "Time running.", LATENCY_BUCKETS)
        self.prefill_time = histogram("vllm:request_prefill_time_seconds", "Time in prefill.", LATENCY_BUCKETS)
        self.decode_time = histogram("vllm:request_decode_time_seconds", "Time in decode.", LATENCY_BUCKETS)
        token_buckets = one_two_five_buckets(max_model_len)
        self.request_prompt_tokens = histogram("vllm:request_prompt_tokens", "Prompt tokens per request.",
                                               token_buckets)
        self.request_generation_tokens = histogram("vllm:request_generation_tokens",
                                                   "Generation tokens per request.", token_buckets)
        self.request_max_tokens = histogram("vllm:request_params_max_tokens", "The max_tokens request parameter.",
                                            token_buckets)
        self.request_max_num_generation_tokens = histogram(
            "vllm:request_max_num_generation_tokens", "Longest completion of a request, in tokens.", token_buckets)
        self.request_n = histogram("vllm:request_params_n", "The n request parameter.", N_BUCKETS)
        self.iteration_tokens = histogram("vllm:iteration_tokens_total", "Tokens per engine step.",
                                          ITERATION_TOKEN_BUCKETS)
        self.http_requests = Counter("http_requests_total", "HTTP requests by handler, method and status.",
                                     ("handler", "method", "status"), registry=r)
        self.http_duration = Histogram("http_request_duration_seconds", "HTTP request latency.",
                                       ("handler", "method"), buckets=HTTP_BUCKETS, registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def record_rejection(self, reason: str) -> None:
        self.admission_rejections.labels(reason=reason).inc()

    def record_http(self, handler: str, method: str, status: int, seconds: float) -> None:
        self.http_requests.labels(handler=handler, method=method, status=f"{status // 100}xx").inc()
        self.http_duration.labels(handler=handler, method=method).observe(seconds)

    def record_cache_config(self, num_blocks: int, block_size: int) -> None:
        """Once the engine has sized its KV pool (blocks in use = kv_cache_usage_perc * num_gpu_blocks)."""
        self._cache_config.labels(block_size=str(block_size), num_gpu_blocks=str(num_blocks)).set(1)

    def record_step(self, step: EngineStepStats) -> None:
        """Engine thread: once per loop iteration (also idle ones, to refresh the gauges)."""
        self.num_requests_running.set(step.num_running)
        self.num_requests_waiting.set(step.num_waiting)
        self.kv_cache_usage.set(step.kv_cache_usage)
        if step.num_scheduled_tokens:
            self.iteration_tokens.observe(step.num_scheduled_tokens)
        _inc(self.prompt_tokens, step.num_prompt_tokens)
        _inc(self.generation_tokens, step.num_generation_tokens)
        _inc(self.num_preemptions, step.num_preemptions)
        _inc(self.prompt_tokens_cached, step.num_cached_prompt_tokens)
        if step.prefix_caching:
            _inc(self.prefix_cache_queries, step.num_prompt_tokens)
            _inc(self.prefix_cache_hits, step.num_cached_prompt_tokens)
        _inc(self.spec_num_drafts, step.spec_num_drafts)
        _inc(self.spec_num_draft_tokens, step.spec_num_draft_tokens)
        _inc(self.spec_num_accepted_tokens, step.spec_num_accepted_tokens)
        for position, accepted in enumerate(step.spec_accepted_per_pos):
            self._spec_per_pos.labels(**self._labels, position=str(position)).inc(accepted)

    def record_inter_token_latency(self, seconds: float) -> None:
        self.itl.observe(seconds)

    def record_finished(self, stats: FinishedRequestStats) -> None:
        """Event loop: once per request (all n completions), aborted ones included."""
        reason = stats.finished_reason if stats.finished_reason in FINISHED_REASONS else "stop"
        self._success.labels(**self._labels, finished_reason=reason).inc()
        self.e2e.observe(stats.e2e)
        self.request_prompt_tokens.observe(stats.num_prompt_tokens)
        self.request_generation_tokens.observe(stats.num_generation_tokens)
        self.request_max_num_generation_tokens.observe(stats.max_generation_tokens)
        self.request_max_tokens.observe(stats.max_tokens_param)
        self.request_n.observe(stats.n)
        for histogram, value in ((self.ttft, stats.ttft), (self.queue_time, stats.queue),
                                 (self.prefill_time, stats.prefill), (self.decode_time, stats.decode),
                                 (self.inference_time, stats.inference), (self.tpot, stats.time_per_output_token)):
            if value is not None:
                histogram.observe(value)


def _inc(counter: Counter, amount: int | float) -> None:
    if amount > 0:
        counter.inc(amount)
