"""The server-overhead script end to end at toy size: the offline engine and a real glm-serve run the same
workload (same prompt tokens, same output tokens) and the ratio and CPU split come out."""

import json
import sys

import pytest

from loadtests import bench_server_overhead

pytestmark = pytest.mark.slow  # starts glm-serve with the embedded model: ~20 s


def test_overhead_script_runs_both_sides_on_one_workload(tmp_path):
    result = bench_server_overhead.main(["--num-prompts", "4", "--input-len", "32", "--output-len", "4",
                                         "--max-concurrency", "2", "--repeats", "1", "--result-dir", str(tmp_path)])
    serving = json.loads((tmp_path / "server_overhead_serving.json").read_text())
    assert (serving["completed"], serving["failed"], serving["total_output_tokens"]) == (4, 0, 16)
    assert serving["total_input_tokens"] == 4 * 32  # the server prefilled exactly the offline prompt tokens
    assert result["ratio"] == pytest.approx(result["serving_output_throughput"] / result["offline_output_throughput"])
    assert result["ratio_per_repeat"] == [pytest.approx(result["ratio"])]
    parts = {"offline", "client"} | ({"server_loop", "server_engine_workers"} if sys.platform == "linux" else set())
    assert set(result["cpu_seconds_per_1k_output_tokens"]) == parts
    assert all(v > 0 for v in result["cpu_seconds_per_1k_output_tokens"].values())
    assert json.loads((tmp_path / "server_overhead.json").read_text()) == result
