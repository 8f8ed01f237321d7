"""Smoke test of the load generator against the real `glm-serve` (a subprocess on 127.0.0.1, the embedded model:
nothing to build, so the server is up in seconds).

Proves the generator and our server agree on the wire: every request succeeds through both APIs, output tokens
come from the server's usage and equal max_tokens under ignore_eos, and the client's --tokenizer count of a raw
completions prompt equals the server's usage.prompt_tokens.
"""

import time

import pytest

from loadtests.bench_serve import main

pytestmark = pytest.mark.slow

SERVED_NAME = "glm-tiny"
START_TIMEOUT_S = 180


@pytest.fixture(scope="module")
def glm_serve(tmp_path_factory):
    pytest.importorskip("server.cli")
    from loadtests.server_process import glm_serve as launch

    from engine.embedded_model import default_model_path

    model_dir = default_model_path()
    args = ["--model", str(model_dir), "--served-model-name", SERVED_NAME, "--device", "cpu", "--dtype", "float32",
            "--max-model-len", "256", "--log-level", "warning"]
    try:
        with launch(args, START_TIMEOUT_S) as server:
            yield server.url, model_dir
    except RuntimeError as error:  # did not come up: its output is in the message
        pytest.fail(str(error))


@pytest.mark.parametrize("backend", ["openai", "openai-chat"])
def test_bench_serve_against_glm_serve(glm_serve, backend, tmp_path):
    base_url, model_dir = glm_serve
    start = time.monotonic()
    result = main(["--backend", backend, "--base-url", base_url, "--tokenizer", str(model_dir),
                   "--dataset-name", "random", "--random-input-len", "16", "--random-output-len", "4",
                   "--num-prompts", "4", "--max-concurrency", "2", "--ignore-eos", "--request-timeout", "120",
                   "--ready-check-timeout-sec", "60", "--disable-tqdm", "--save-result", "--save-detailed",
                   "--result-dir", str(tmp_path), "--goodput", "e2el:600000"])
    assert time.monotonic() - start < 300
    assert (result["completed"], result["failed"], result["error_counts"]) == (4, 0, {})
    assert result["model_id"] == SERVED_NAME  # discovered from /v1/models
    assert result["output_lens"] == [4, 4, 4, 4] and result["total_output_tokens"] == 16
    assert result["request_goodput"] == pytest.approx(result["request_throughput"])
    assert all(0 < ttft <= latency for ttft, latency in zip(result["ttfts"], result["latencies"]))
    assert all(len(itl) <= 3 for itl in result["itls"])  # at most one gap per token after the first
    if backend == "openai":
        # Raw prompt, no template: the client's tokenizer count is exactly what the server prefilled.
        assert result["input_lens"] == [16, 16, 16, 16] and result["total_input_tokens"] == 64
    else:
        assert all(n > 16 for n in result["input_lens"])  # the chat template adds its tokens
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".json", ".png"]
