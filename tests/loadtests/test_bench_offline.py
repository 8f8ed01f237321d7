"""The offline comparison harness: all three engines run the same workload and give the same greedy tokens."""

import json

import pytest

from loadtests import bench_offline

pytest.importorskip("transformers")
pytestmark = pytest.mark.slow  # builds a model and runs transformers twice: ~10 s


def test_offline_comparison_three_engines_identical(tmp_path):
    result_file = tmp_path / "offline.json"
    result = bench_offline.main(["--num-prompts", "3", "--min-input", "4", "--max-input", "24", "--min-output", "2",
                                 "--max-output", "6", "--batch-size", "2", "--hidden-size", "32", "--num-layers", "2",
                                 "--vocab-size", "256", "--threads", "1", "--result-file", str(result_file)])
    names = [row["name"] for row in result["rows"]]
    assert names == ["glm-serve LLM.generate", "transformers generate, static batches of 2",
                     "transformers continuous batching"]
    assert all(row["identical"] == 3 and row["common_prefix_fraction"] == 1.0 for row in result["rows"])
    assert result["num_prompts"] == 3 and 6 <= result["output_tokens"] <= 18
    assert "cores" in result["machine"] and "torch" in result["machine"]
    assert json.loads(result_file.read_text()) == result
