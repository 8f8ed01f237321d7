"""`python -m loadtests.bench_serve` end to end against a scripted in-process OpenAI server (127.0.0.1 only).

Counts and structure are asserted exactly; timings only from below (the server sleeps at least that long).
"""

import json
import math

import pytest

from fake_openai_server import CHAT_TOKENS_PER_MESSAGE, MODEL_NAME, FakeBehaviour, FakeOpenAIServer, free_port
from loadtests.bench_serve import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def bench(server, *args):
    backend = [] if "--backend" in args else ["--backend", "openai-chat"]
    return main(["--base-url", server.base_url, "--disable-tqdm", "--random-input-len", "12", *backend, *args])


def test_chat_streaming_metrics_counts_and_result_file(tmp_path):
    behaviour = FakeBehaviour(ttft_s=0.05, itl_s=0.01, tokens_per_chunk=2)
    with FakeOpenAIServer(behaviour) as server:
        result = bench(server, "--num-prompts", "6", "--random-output-len", "8", "--max-concurrency", "2",
                       "--ignore-eos", "--api-key", "sk-test", "--save-result", "--save-detailed",
                       "--result-dir", str(tmp_path), "--goodput", "ttft:60000", "--metadata", "machine=ci")
        requests = server.state.requests
    assert (result["completed"], result["failed"], result["error_counts"]) == (6, 0, {})
    assert result["model_id"] == MODEL_NAME  # discovered from /v1/models
    assert result["total_output_tokens"] == 6 * 8  # usage.completion_tokens
    assert result["total_input_tokens"] == 6 * (12 + CHAT_TOKENS_PER_MESSAGE)  # usage.prompt_tokens
    # 8 tokens in chunks of 2 -> 4 output chunks -> 3 gaps per request (ITL is per chunk, TPOT per token).
    assert [len(itl) for itl in result["itls"]] == [3] * 6
    assert all(t >= 0.05 for t in result["ttfts"])
    assert min(gap for itl in result["itls"] for gap in itl) > 0
    assert result["mean_itl_ms"] >= 10.0 * 0.5 and result["median_tpot_ms"] > 0
    assert result["p99_ttft_ms"] >= result["median_ttft_ms"] >= 50.0
    assert result["max_concurrent_requests"] <= 2 and result["max_concurrency"] == 2
    assert result["request_goodput"] == pytest.approx(result["request_throughput"])
    assert result["machine"] == "ci" and result["request_rate"] == "inf"
    assert result["generated_texts"][0] == "".join(f" w{i}" for i in range(8))
    # 1 readiness probe + 6 measured requests, each a streaming chat body with the vLLM fields.
    assert len(requests) == 7
    for route, body, headers in requests:
        assert route == "chat" and body["stream"] is True and body["stream_options"] == {"include_usage": True}
        assert body["max_completion_tokens"] == 8 and body["ignore_eos"] is True and body["temperature"] == 0.0
        assert body["model"] == MODEL_NAME and len(body["messages"][0]["content"].split()) == 12
        assert headers["authorization"] == "Bearer sk-test"
    assert len({h["x-request-id"] for _, _, h in requests[1:]}) == 6
    files = sorted(tmp_path.iterdir())
    assert [f.suffix for f in files] == [".json", ".png"]
    saved = json.loads(files[0].read_text())
    assert saved["total_output_tokens"] == 48 and files[0].name.startswith("openai-chat-infqps-concurrency2-fake")
    assert files[1].read_bytes()[:8] == PNG_MAGIC


def test_completions_backend_and_concurrency_cap_is_enforced():
    with FakeOpenAIServer(FakeBehaviour(itl_s=0.002)) as server:
        result = bench(server, "--backend", "openai", "--num-prompts", "8", "--random-output-len", "5",
                       "--max-concurrency", "3", "--model", MODEL_NAME, "--num-warmups", "2",
                       "--percentile-metrics", "ttft,e2el", "--metric-percentiles", "90")
        peak, requests = server.state.peak_in_flight, server.state.requests
    assert result["completed"] == 8 and result["total_output_tokens"] == 40
    assert result["total_input_tokens"] == 8 * 12
    assert 1 <= peak <= 3
    assert len(requests) == 1 + 2 + 8  # readiness probe, warm-ups, measured
    assert all(route == "completions" and body["max_tokens"] == 5 and "ignore_eos" not in body
               for route, body, _ in requests)
    assert "p90_ttft_ms" in result and "mean_tpot_ms" not in result and "p99_ttft_ms" not in result
    assert "itls" not in result  # per-request arrays only with --save-detailed


def test_failures_are_counted_by_kind_never_dropped():
    # Every 3rd arrival gets a 503 (arrival 1 is the readiness probe), every 4th an error event mid-stream.
    with FakeOpenAIServer(FakeBehaviour(http_503_every=3, midstream_error_every=4)) as server:
        result = bench(server, "--num-prompts", "11", "--random-output-len", "4", "--max-concurrency", "1",
                       "--save-detailed")
    # Measured arrivals 2..12: 503 at 3, 6, 9, 12; error events at 4, 8 (12 is already a 503).
    assert result["error_counts"] == {"http_503": 4, "stream_error": 2}
    assert (result["completed"], result["failed"]) == (5, 6)
    assert result["total_output_tokens"] == 5 * 4
    assert result["errors"][1] == "queue full" and result["error_kinds"][2] == "stream_error"
    assert result["output_lens"][1] == 0


@pytest.mark.parametrize("behaviour, kind", [(FakeBehaviour(omit_usage=True), "missing_usage"),
                                             (FakeBehaviour(omit_done=True), "incomplete_stream"),
                                             (FakeBehaviour(output_tokens=0), "no_output")])
def test_streams_without_usage_done_or_output_fail(behaviour, kind):
    with FakeOpenAIServer(behaviour) as server:
        result = bench(server, "--num-prompts", "2", "--random-output-len", "3", "--ready-check-timeout-sec", "0")
    assert result["error_counts"] == {kind: 2} and result["completed"] == 0
    assert result["total_output_tokens"] == 0 and result["mean_ttft_ms"] == 0.0


def test_request_timeout_and_refused_connections_are_errors():
    with FakeOpenAIServer(FakeBehaviour(ttft_s=2.0)) as server:
        result = bench(server, "--num-prompts", "2", "--random-output-len", "2", "--request-timeout", "0.3",
                       "--ready-check-timeout-sec", "0")
    assert result["error_counts"] == {"timeout": 2}
    closed = f"http://127.0.0.1:{free_port()}"
    result = main(["--base-url", closed, "--model", "m", "--num-prompts", "2", "--random-input-len", "4",
                   "--ready-check-timeout-sec", "0", "--disable-tqdm"])
    assert result["error_counts"] == {"connect_error": 2}


def test_readiness_check_aborts_on_a_non_connection_failure():
    with FakeOpenAIServer(FakeBehaviour(http_503_every=1)) as server:
        with pytest.raises(RuntimeError, match="initial test request failed \\(http_503\\)"):
            bench(server, "--num-prompts", "2", "--model", MODEL_NAME)


def test_spec_decode_acceptance_from_prometheus_counters():
    # Chunks of 3 tokens with 2 drafts each: every draft accepted after the first chunk.
    with FakeOpenAIServer(FakeBehaviour(tokens_per_chunk=3, drafts_per_chunk=2)) as server:
        result = bench(server, "--num-prompts", "3", "--random-output-len", "9")
    # Per request: 3 chunks, 2 verify rounds counted, 2 accepted each -> measured run only (probe excluded).
    assert result["spec_decode_num_drafts"] == 3 * 2
    assert result["spec_decode_draft_tokens"] == 3 * 2 * 2
    assert result["spec_decode_accepted_tokens"] == 3 * 2 * 2
    assert result["spec_decode_acceptance_rate"] == pytest.approx(100.0)
    assert result["spec_decode_acceptance_length"] == pytest.approx(3.0)


def test_poisson_rate_spreads_arrivals():
    with FakeOpenAIServer() as server:
        result = bench(server, "--num-prompts", "4", "--random-output-len", "2", "--request-rate", "20",
                       "--seed", "1", "--save-detailed")
    starts = result["start_times"]
    assert result["request_rate"] == 20.0 and result["completed"] == 4
    assert starts == sorted(starts) and starts[-1] - starts[0] > 0.01


def test_sweep_concurrency_writes_points_and_plots(tmp_path):
    with FakeOpenAIServer(FakeBehaviour(itl_s=0.002)) as server:
        result = bench(server, "--num-prompts", "4", "--random-output-len", "3", "--sweep-concurrency", "1,2",
                       "--save-result", "--result-dir", str(tmp_path))
    assert result["sweep_concurrency"] == [1, 2]
    assert [p["max_concurrency"] for p in result["points"]] == [1, 2]
    for point in result["points"]:
        assert point["completed"] == 4 and point["total_output_tokens"] == 12
        assert {"p99_ttft_ms", "p99_tpot_ms", "p99_itl_ms", "p99_e2el_ms", "output_throughput"} <= set(point)
    names = sorted(f.name for f in tmp_path.iterdir())
    assert len(names) == 3 and sum(n.endswith(".json") for n in names) == 1
    assert any(n.endswith("_sweep.png") for n in names) and any(n.endswith("_cdf.png") for n in names)
    assert all((tmp_path / n).read_bytes()[:8] == PNG_MAGIC for n in names if n.endswith(".png"))


@pytest.mark.parametrize(
    "args, field",
    [(["--backend", "vllm"], None), (["--request-rate", "0"], "request_rate"),
     (["--max-concurrency", "0"], "max_concurrency"), (["--percentile-metrics", "ttft,foo"], "percentile_metrics"),
     (["--metric-percentiles", "0"], "metric_percentiles"), (["--goodput", "ttft"], "goodput"),
     (["--base-url", "127.0.0.1:8000"], "base_url"), (["--num-prompts", "0"], "num_prompts"),
     (["--sweep-concurrency", "0,2"], "sweep_concurrency"), (["--extra-body", "[1]"], "extra_body")],
)
def test_bad_flags_are_rejected_naming_the_field(args, field):
    if field is None:  # argparse choices
        with pytest.raises(SystemExit):
            main(args)
        return
    with pytest.raises(ValueError, match=field):
        main(["--model", "m", "--ready-check-timeout-sec", "0", *args])


def test_base_url_with_v1_suffix_is_not_doubled():
    from loadtests.serve_config import ServeBenchConfig

    config = ServeBenchConfig(base_url="http://127.0.0.1:9/v1/", endpoint="/v1/completions")
    assert config.api_url == "http://127.0.0.1:9/v1/completions"
    assert config.server_root == "http://127.0.0.1:9"
    assert not math.isfinite(ServeBenchConfig().request_rate)


def test_chat_dataset_sends_history_tools_and_thinking_switch(tmp_path):
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    record = {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "one two three"},
                           {"role": "assistant", "content": "four five"}],
              "tools": tools, "enable_thinking": False, "target_index": 2}
    path = tmp_path / "eval.jsonl"
    path.write_text(json.dumps(record) + "\n")
    with FakeOpenAIServer() as server:
        result = bench(server, "--dataset-name", "chat", "--dataset-path", str(path), "--num-prompts", "2",
                       "--chat-output-len", "3", "--extra-body", '{"top_k": 1, "chat_template_kwargs": {}}')
        requests = server.state.requests
    assert result["completed"] == 2 and result["total_output_tokens"] == 6
    assert result["total_input_tokens"] == 2 * (2 + 3 + 2 * CHAT_TOKENS_PER_MESSAGE)
    for _, body, _ in requests:
        assert body["messages"] == record["messages"][:2] and body["tools"] == tools
        assert body["chat_template_kwargs"] == {"enable_thinking": False}  # the record's switch wins
        assert body["top_k"] == 1 and body["max_completion_tokens"] == 3


def test_model_discovery_on_a_dead_port_fails_with_the_url():
    closed = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(RuntimeError, match=f"{closed}/v1/models: cannot connect"):
        main(["--base-url", closed, "--num-prompts", "1", "--ready-check-timeout-sec", "0", "--disable-tqdm"])
