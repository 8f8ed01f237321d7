"""Benchmark metrics from hand-made request outputs: exact figures, vLLM definitions, failures kept apart."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loadtests.metric_summary import MetricSummary, percentile, percentile_key
from loadtests.metrics import calculate_metrics, parse_goodput, peak_concurrency, request_tpot
from loadtests.request_func import RequestFuncOutput


def ok(ttft, itl, latency, out, prompt=10, start=0.0, prompt_len=None):
    return RequestFuncOutput(success=True, ttft=ttft, itl=list(itl), latency=latency, output_tokens=out,
                             prompt_tokens=prompt, prompt_len=prompt_len, start_time=start)


def failed(kind):
    return RequestFuncOutput().fail(kind, "boom")


def test_totals_throughputs_and_error_counts():
    outputs = [
        ok(0.1, [0.05, 0.05], 0.4, out=4, prompt=10, start=0.0),
        ok(0.2, [0.1], 0.5, out=2, prompt=None, prompt_len=6, start=0.1),  # no server usage: client count
        failed("http_503"), failed("http_503"), failed("timeout"),
    ]
    m = calculate_metrics(outputs, duration_s=2.0, percentiles=[50, 99])
    assert (m.completed, m.failed) == (2, 3)
    assert m.error_counts == {"http_503": 2, "timeout": 1}
    assert (m.total_input, m.total_output) == (16, 6)
    assert m.request_throughput == 1.0
    assert m.output_throughput == 3.0
    assert m.total_token_throughput == 11.0
    assert m.request_goodput is None


def test_tpot_itl_ttft_e2el_follow_vllm_definitions():
    outputs = [ok(0.1, [0.05, 0.05, 0.2], 0.4, out=4), ok(0.3, [], 0.3, out=1), ok(0.2, [0.3], 0.5, out=2)]
    m = calculate_metrics(outputs, 1.0, percentiles=[99])
    # TPOT = (latency - ttft) / (tokens - 1), one-token outputs excluded: 0.1 and 0.3 s.
    assert m.tpot.count == 2 and m.tpot.mean == pytest.approx(200.0)
    # ITL pools every gap of every request.
    assert m.itl.count == 4 and m.itl.mean == pytest.approx(150.0) and m.itl.median == pytest.approx(125.0)
    assert m.ttft.mean == pytest.approx(200.0) and m.e2el.median == pytest.approx(400.0)
    assert request_tpot(outputs[1]) is None


def test_goodput_counts_requests_meeting_every_slo():
    outputs = [
        ok(0.1, [], 0.3, out=3),  # tpot 100 ms
        ok(0.1, [], 0.1, out=1),  # tpot counts as 0
        ok(0.6, [], 0.8, out=3),  # ttft too slow
        failed("stream_error"),  # never good
    ]
    m = calculate_metrics(outputs, 2.0, [99], goodput_slos_ms={"ttft": 500, "tpot": 100})
    assert m.request_goodput == pytest.approx(1.0)
    m = calculate_metrics(outputs, 2.0, [99], goodput_slos_ms={"tpot": 99})
    assert m.request_goodput == pytest.approx(0.5)  # only the one-token output (tpot 0); the others have 100 ms
    m = calculate_metrics(outputs, 1.0, [99], goodput_slos_ms={"e2el": 300})
    assert m.request_goodput == pytest.approx(2.0)


def test_no_successes_give_zero_latencies_not_nan():
    m = calculate_metrics([failed("connect_error")], 1.0, [50, 99])
    assert m.completed == 0 and m.error_counts == {"connect_error": 1}
    assert m.ttft.to_dict("ttft") == {"mean_ttft_ms": 0.0, "median_ttft_ms": 0.0, "std_ttft_ms": 0.0,
                                      "p50_ttft_ms": 0.0, "p99_ttft_ms": 0.0}


def test_duration_must_be_positive():
    with pytest.raises(ValueError, match="duration_s"):
        calculate_metrics([], 0.0, [99])


def test_peak_concurrency_uses_half_open_intervals():
    back_to_back = [ok(0, [], 1.0, 1, start=0.0), ok(0, [], 1.0, 1, start=1.0)]
    assert peak_concurrency(back_to_back) == 1
    nested = [ok(0, [], 3.0, 1, start=0.0), ok(0, [], 1.0, 1, start=0.5), ok(0, [], 1.0, 1, start=1.0)]
    assert peak_concurrency(nested) == 3


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 1e4, allow_nan=False), min_size=1, max_size=50), st.floats(0, 100))
def test_percentile_matches_numpy_linear(values, p):
    assert percentile(sorted(values), p) == pytest.approx(np.percentile(values, p), rel=1e-9, abs=1e-9)


def test_summary_matches_numpy_mean_std_median():
    values = [0.003, 0.001, 0.010, 0.002]
    s = MetricSummary.of_seconds(values, [90, 99.9])
    ms = np.array(values) * 1000
    assert s.mean == pytest.approx(ms.mean()) and s.std == pytest.approx(ms.std())
    assert s.median == pytest.approx(np.median(ms))
    assert [k for k in s.to_dict("itl")] == ["mean_itl_ms", "median_itl_ms", "std_itl_ms", "p90_itl_ms",
                                             "p99.9_itl_ms"]
    assert percentile_key(99.0) == "p99"


@pytest.mark.parametrize("bad, field", [(["ttft"], "NAME:MS"), (["itl:5"], "NAME:MS"), (["tpot:fast"], "number"),
                                         (["e2el:-1"], ">= 0")])
def test_parse_goodput_rejects_bad_slos(bad, field):
    with pytest.raises(ValueError, match="goodput") as info:
        parse_goodput(bad)
    assert field in str(info.value)


def test_parse_goodput():
    assert parse_goodput(["ttft:500", "tpot:12.5"]) == {"ttft": 500.0, "tpot": 12.5}
    assert parse_goodput(None) == {}
