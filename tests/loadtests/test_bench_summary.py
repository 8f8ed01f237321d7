"""results/summary.md is built from the JSON files a `make bench` run writes."""

import json

from loadtests.bench_summary import write_summary


def test_summary_tables_from_result_files(tmp_path):
    (tmp_path / "offline.json").write_text(json.dumps({
        "num_prompts": 2, "input_tokens": 40, "output_tokens": 10, "machine": "test box",
        "rows": [{"name": "glm-serve LLM.generate", "seconds": 2.0, "output_tok_s": 5.0, "total_tok_s": 25.0,
                  "identical": 2},
                 {"name": "transformers generate", "seconds": 6.0, "output_tok_s": 1.67, "total_tok_s": 8.3,
                  "identical": 1}]}))
    point = {"max_concurrency": 4, "request_throughput": 1.5, "output_throughput": 96.0, "p50_ttft_ms": 10.0,
             "p99_ttft_ms": 20.0, "p50_tpot_ms": 3.0, "p99_tpot_ms": 4.0, "p99_itl_ms": 5.0, "failed": 0}
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "glm-serve-infqps-sweep-x.json").write_text(json.dumps(
        {"label": "glm-serve", "model_id": "tiny", "num_prompts": 8, "points": [point]}))
    (tmp_path / "spec.log").write_text("batch k out tok/s\n1 0 85.0\n")
    steps = {"offline": {"command": "python -m loadtests.bench_offline", "seconds": 12.3},
             "spec": {"command": "python -m loadtests.bench_spec_decode", "seconds": 60.0}}
    path = write_summary(tmp_path, steps)
    text = path.read_text()
    assert "| transformers generate | 6.00 | 1.7 | 8.3 | 3.00x | 1/2 |" in text
    assert "| 4 | 1.50 | 96.0 | 10 | 20 | 3.0 | 4.0 | 5.0 | 0 |" in text
    assert "1 0 85.0" in text and "| offline | 12 | `python -m loadtests.bench_offline` |" in text
    assert "Server overhead" not in text  # no result file, no table
