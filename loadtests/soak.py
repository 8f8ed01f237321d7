"""Soak test: mixed traffic with random client cancellations against a running glm-serve, for a given duration.

    python -m loadtests.soak --base-url http://127.0.0.1:8000 --duration 600 --concurrency 16

Each worker loops until the deadline, drawing one request kind at a time (`KINDS`): chat and completions, streamed
or not, n=2, tools, a long prompt, a streamed chat the client abandons at a random chunk, and a deliberately invalid
body (its 400 is the expected answer). Every outcome is classified: `ok`, `cancelled` (by us), expected refusals
(`expected_400` for the invalid body, `http_503` when the server sheds load), and everything else is an
unexpected error by kind (`http_5xx`, `stream_error`, `incomplete_stream`, `transport_error`, ...).

At the end it waits for the engine to go idle and prints requests served, errors by kind, latency percentiles of the
completed requests, the KV blocks still in use (`vllm:kv_cache_usage_perc` x `num_gpu_blocks`) and the server's
resident memory (`process_resident_memory_bytes`) at start and end. Exit status 1 when any unexpected error
happened or KV blocks are still in use.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from loadtests.metric_summary import percentile

RETRY_BACKOFF_S = 1.0  # longest pause after a 503 (the server's Retry-After)
EXPECTED = frozenset({"ok", "cancelled", "expected_400", "http_503"})
KINDS = ("chat", "chat_stream", "chat_cancel", "completion", "completion_stream", "chat_n2", "tools", "long",
         "invalid")
WORDS = "the quick brown fox jumps over a lazy dog while it rains in paris today".split()
TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                         "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                        "required": ["city"]}}}


@dataclass
class SoakStats:
    outcomes: Counter[str] = field(default_factory=Counter)  # outcome -> count
    latencies_s: list[float] = field(default_factory=list)  # e2e of completed (ok) requests
    examples: dict[str, str] = field(default_factory=dict)  # first message per unexpected outcome
    rss_samples_mib: list[float] = field(default_factory=list)  # server RSS sampled during the run

    def record(self, outcome: str, started: float, detail: str = "") -> None:
        self.outcomes[outcome] += 1
        if outcome == "ok":
            self.latencies_s.append(time.monotonic() - started)
        elif outcome not in EXPECTED and outcome not in self.examples:
            self.examples[outcome] = detail[:300]

    @property
    def num_unexpected(self) -> int:
        return sum(count for outcome, count in self.outcomes.items() if outcome not in EXPECTED)


@dataclass(frozen=True)
class Target:
    model: str  # served model name
    long_words: int  # words of the `long` kind's prompt: about half the context
    max_tokens: int  # the most tokens one request asks for (each draws 1..max_tokens)


def build_request(kind: str, target: Target, rng: random.Random) -> tuple[str, dict[str, Any]]:
    """(route, body) for one request of `kind`."""
    model = target.model
    text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 40)))
    max_tokens = rng.randint(1, target.max_tokens)
    chat: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": max_tokens,
                            "temperature": rng.choice([0.0, 0.7, 1.0]), "seed": rng.randint(0, 1000)}
    if kind in ("chat", "chat_stream", "chat_cancel"):
        return "/v1/chat/completions", {**chat, "stream": kind != "chat"}
    if kind == "chat_n2":
        return "/v1/chat/completions", {**chat, "n": 2, "stream": rng.random() < 0.5}
    if kind == "tools":
        return "/v1/chat/completions", {**chat, "tools": [TOOL], "stream": rng.random() < 0.5}
    if kind == "long":
        long_text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(target.long_words // 2, target.long_words)))
        return "/v1/chat/completions", {**chat, "messages": [{"role": "user", "content": long_text}], "stream": True}
    if kind == "invalid":
        return "/v1/chat/completions", {**chat, "max_tokens": 0}
    return "/v1/completions", {"model": model, "prompt": text, "max_tokens": max_tokens,
                               "stream": kind == "completion_stream", "temperature": 0.0}


async def run_one(client: httpx.AsyncClient, kind: str, target: Target, rng: random.Random,
                  stats: SoakStats) -> None:
    route, body = build_request(kind, target, rng)
    started = time.monotonic()
    cancel_after = rng.randint(1, 12) if kind == "chat_cancel" else None
    try:
        if not body.get("stream"):
            response = await client.post(route, json=body)
            stats.record(_classify_status(response.status_code, kind, response.text), started, response.text)
            return
        async with client.stream("POST", route, json=body) as response:
            if response.status_code != 200:
                text = (await response.aread()).decode(errors="replace")
                stats.record(_classify_status(response.status_code, kind, text), started, text)
                return
            outcome, detail = await _read_stream(response, cancel_after)
            stats.record(outcome, started, detail)
    except httpx.TimeoutException as error:
        stats.record("timeout", started, repr(error))
    except httpx.TransportError as error:
        stats.record("transport_error", started, repr(error))


def _classify_status(status: int, kind: str, text: str) -> str:
    if status == 200:
        return "unexpected_200" if kind == "invalid" else "ok"
    if status == 400 and kind == "invalid":
        return "expected_400"
    if status == 503:
        return "http_503"
    return f"http_{status}"


async def _read_stream(response: httpx.Response, cancel_after: int | None) -> tuple[str, str]:
    """`ok` when the stream ended with [DONE] after finish reasons and no error event; `cancelled` when we left."""
    events = 0
    finished = False
    async for line in response.aiter_lines():
        if not line.startswith("data: "):
            continue
        payload = line[len("data: "):]
        if payload == "[DONE]":
            return ("ok", "") if finished else ("incomplete_stream", "[DONE] before any finish_reason")
        chunk = json.loads(payload)
        if "error" in chunk:
            return "stream_error", payload
        finished = finished or any(c.get("finish_reason") for c in chunk.get("choices", []))
        events += 1
        if cancel_after is not None and events >= cancel_after:
            return "cancelled", ""  # leaving the `async with` closes the connection mid-stream
    return "incomplete_stream", "the stream ended without [DONE]"


async def worker(client: httpx.AsyncClient, target: Target, kinds: list[str], deadline: float, seed: int,
                 stats: SoakStats) -> None:
    rng = random.Random(seed)
    while time.monotonic() < deadline:
        shed_before = stats.outcomes["http_503"]
        await run_one(client, rng.choice(kinds), target, rng, stats)
        if stats.outcomes["http_503"] > shed_before:  # as clients should: back off (Retry-After is 1 s)
            await asyncio.sleep(rng.uniform(0.2, RETRY_BACKOFF_S))


def find_target(base_url: str, headers: dict[str, str], model: str | None, max_tokens: int) -> Target:
    """The served model and its context; the `long` prompt is sized with the server's own /tokenize."""
    card = httpx.get(base_url + "/v1/models", headers=headers, timeout=30).json()["data"][0]
    name = model or card["id"]
    sample = " ".join(WORDS * 8)
    count = httpx.post(base_url + "/tokenize", headers=headers, timeout=30,
                       json={"model": name, "prompt": sample}).json()["count"]
    tokens_per_word = count / len(WORDS * 8)
    return Target(name, max(8, int(card["max_model_len"] / 2 / tokens_per_word)), max_tokens)


@dataclass(frozen=True)
class ServerState:
    rss_bytes: float | None  # process_resident_memory_bytes
    kv_usage: float  # 0..1
    num_blocks: int | None  # from vllm:cache_config_info
    num_running: float
    num_waiting: float

    @property
    def kv_blocks_in_use(self) -> int | None:
        return None if self.num_blocks is None else round(self.kv_usage * self.num_blocks)


def server_state(base_url: str, headers: dict[str, str]) -> ServerState:
    text = httpx.get(base_url + "/metrics", headers=headers, timeout=30).text
    values: dict[str, float] = {}
    num_blocks = None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values.setdefault(sample.name, sample.value)
            if sample.name == "vllm:cache_config_info":
                num_blocks = int(sample.labels["num_gpu_blocks"])
    return ServerState(values.get("process_resident_memory_bytes"), values.get("vllm:kv_cache_usage_perc", 0.0),
                       num_blocks, values.get("vllm:num_requests_running", 0.0),
                       values.get("vllm:num_requests_waiting", 0.0))


async def sample_rss(base_url: str, headers: dict[str, str], every_s: float, stats: SoakStats) -> None:
    """The server's RSS every `every_s` seconds while traffic runs (growth that levels off is warm-up, not a leak)."""
    while True:
        await asyncio.sleep(every_s)
        state = await asyncio.to_thread(server_state, base_url, headers)
        if state.rss_bytes is not None:
            stats.rss_samples_mib.append(round(state.rss_bytes / 2**20, 1))


def wait_idle(base_url: str, headers: dict[str, str], timeout_s: float = 60.0) -> ServerState:
    deadline = time.monotonic() + timeout_s
    while True:
        state = server_state(base_url, headers)
        idle = state.num_running == 0 and state.num_waiting == 0 and state.kv_usage == 0
        if idle or time.monotonic() > deadline:
            return state
        time.sleep(0.5)


async def soak(args: argparse.Namespace) -> int:
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    target = find_target(args.base_url, headers, args.model, args.max_tokens)
    start = server_state(args.base_url, headers)
    stats = SoakStats()
    limits = httpx.Limits(max_connections=args.concurrency * 2)
    began = time.monotonic()
    async with httpx.AsyncClient(base_url=args.base_url, headers=headers, timeout=args.request_timeout,
                                 limits=limits) as client:
        deadline = began + args.duration
        sampler = asyncio.create_task(sample_rss(args.base_url, headers, args.sample_every, stats))
        await asyncio.gather(*(worker(client, target, args.kinds, deadline, args.seed + i, stats)
                               for i in range(args.concurrency)))
        sampler.cancel()
    elapsed = time.monotonic() - began
    end = wait_idle(args.base_url, headers)
    report = summarize(args, target.model, stats, start, end, elapsed)
    print_report(report)
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as out:
            json.dump(report, out, indent=2)
    return 0 if stats.num_unexpected == 0 and not end.kv_blocks_in_use else 1


def summarize(args: argparse.Namespace, model: str, stats: SoakStats, start: ServerState, end: ServerState,
              elapsed: float) -> dict[str, Any]:
    latencies = sorted(stats.latencies_s)
    pct = {f"p{p}": round(percentile(latencies, p) * 1000, 1) for p in (50, 90, 99)} if latencies else {}
    mib = 2**20
    return {
        "model": model, "duration_s": round(elapsed, 1), "concurrency": args.concurrency,
        "requests_sent": sum(stats.outcomes.values()), "requests_served": stats.outcomes["ok"],
        "outcomes": dict(sorted(stats.outcomes.items())), "unexpected_errors": stats.num_unexpected,
        "unexpected_examples": stats.examples, "latency_ms": pct,
        "kv_blocks_in_use_end": end.kv_blocks_in_use, "kv_num_blocks": end.num_blocks,
        "requests_left_end": end.num_running + end.num_waiting,
        "rss_mib_start": None if start.rss_bytes is None else round(start.rss_bytes / mib, 1),
        "rss_mib_end": None if end.rss_bytes is None else round(end.rss_bytes / mib, 1),
        "rss_mib_samples": stats.rss_samples_mib, "rss_sample_every_s": args.sample_every,
    }


def print_report(report: dict[str, Any]) -> None:
    print(f"soak: {report['duration_s']} s, {report['concurrency']} clients, model {report['model']}")
    print(f"  requests sent        {report['requests_sent']}")
    print(f"  requests served      {report['requests_served']} (complete, correct wire format)")
    print("  outcomes             " + ", ".join(f"{k}={v}" for k, v in report["outcomes"].items()))
    print(f"  unexpected errors    {report['unexpected_errors']} {report['unexpected_examples'] or ''}")
    print("  latency (ms)         " + ", ".join(f"{k} {v}" for k, v in report["latency_ms"].items()))
    print(f"  KV blocks in use     {report['kv_blocks_in_use_end']} of {report['kv_num_blocks']} at the end "
          f"(requests left in the engine: {report['requests_left_end']:g})")
    print(f"  server RSS (MiB)     {report['rss_mib_start']} at start, {report['rss_mib_end']} at end")
    if report["rss_mib_samples"]:
        print(f"  RSS every {report['rss_sample_every_s']:g} s   {report['rss_mib_samples']}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="loadtests.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--base-url", default="http://127.0.0.1:8000", help="server root (no /v1)")
    p.add_argument("--duration", type=float, default=600.0, help="seconds of traffic")
    p.add_argument("--concurrency", type=int, default=16, help="clients sending back to back")
    p.add_argument("--model", help="served model name (default: the first of /v1/models)")
    p.add_argument("--api-key", help="bearer key, when the server has one")
    p.add_argument("--max-tokens", type=int, default=48, help="each request asks for 1..N tokens")
    p.add_argument("--kinds", type=lambda text: text.split(","), default=list(KINDS),
                   help=f"comma-separated request kinds to draw from (default: all of {','.join(KINDS)})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--request-timeout", type=float, default=300.0, help="seconds per request before `timeout`")
    p.add_argument("--sample-every", type=float, default=60.0, help="seconds between RSS samples during the run")
    p.add_argument("--json-out", help="also write the report as JSON here")
    return p


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(soak(build_parser().parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
