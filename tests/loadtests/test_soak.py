"""CI smoke run of `loadtests/soak.py`: a few seconds of mixed traffic with cancellations against a real server on
a tiny random model; no unexpected error, every kind of outcome seen, nothing left in the KV pool."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

SERVER_TESTS = Path(__file__).resolve().parents[1] / "server"
sys.path.insert(0, str(SERVER_TESTS))
from server_harness import ServerProcess  # noqa: E402
from server_model import make_server_model_dir  # noqa: E402

from loadtests import soak  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> ServerProcess:
    model_dir = make_server_model_dir(tmp_path_factory.mktemp("soak_model"))
    proc = ServerProcess(model_dir, "--max-model-len", "512", "--api-key", "sk-soak", "--max-queued-requests", "6")
    yield proc
    proc.stop()


def test_soak_smoke(server: ServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "soak.json"
    kinds = "chat_cancel,invalid,chat_stream,chat_n2,completion,long"
    code = soak.main(["--base-url", server.url, "--duration", "5", "--concurrency", "6", "--max-tokens", "8",
                      "--kinds", kinds, "--sample-every", "1", "--api-key", "sk-soak", "--json-out", str(out),
                      "--request-timeout", "60"])
    report = json.loads(out.read_text())
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert report["unexpected_errors"] == 0 and report["requests_served"] > 0
    assert report["outcomes"]["cancelled"] > 0 and report["outcomes"]["expected_400"] > 0
    assert report["kv_blocks_in_use_end"] == 0 and report["kv_num_blocks"] > 0 and report["requests_left_end"] == 0
    assert report["rss_mib_start"] > 0 and report["rss_mib_end"] > 0 and report["latency_ms"]["p99"] > 0
    assert len(report["rss_mib_samples"]) >= 3 and min(report["rss_mib_samples"]) > 0
    for line in ("requests served", "unexpected errors", "KV blocks in use", "server RSS (MiB)", "p99"):
        assert line in printed
    assert "sk-soak" not in server.log()
