"""Prometheus and Grafana of the compose stack: the configs validate, every series the dashboard queries is one
the real server exposes, and (where the `prometheus` binary is installed) the dashboard's queries, evaluated by a
real Prometheus scraping a real glm-serve, return data."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from docker_support import DOCKER_DIR, send_traffic, tool_path
from promql_names import metric_names, substitute_variables
from served_command import ServedCommand, free_port

PROMETHEUS_YML = DOCKER_DIR / "prometheus" / "prometheus.yml"
GRAFANA = DOCKER_DIR / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "glm-serve.json"
PROMETHEUS_SERIES = {"up"}  # written by Prometheus itself, not by the server
# Series that exist only after a particular event; the dashboard shows them empty until then.
ON_DEMAND = {
    "vllm:spec_decode_num_accepted_tokens_per_pos_total": "labelled by position: only with --num-speculative-tokens",
    "vllm:admission_rejections_total": "labelled by reason: only after a 503 from an admission limit",
}
# What the dashboard must show (the issue's list), as the series that show it.
REQUIRED = {
    "requests running": {"vllm:num_requests_running"},
    "requests waiting": {"vllm:num_requests_waiting"},
    "tokens/s": {"vllm:prompt_tokens_total", "vllm:generation_tokens_total"},
    "TTFT": {"vllm:time_to_first_token_seconds_bucket"},
    "ITL": {"vllm:inter_token_latency_seconds_bucket"},
    "E2E latency": {"vllm:e2e_request_latency_seconds_bucket"},
    "KV-cache usage": {"vllm:kv_cache_usage_perc"},
    "prefix-cache hit rate": {"vllm:prefix_cache_hits_total", "vllm:prefix_cache_queries_total"},
    "speculative acceptance rate": {"vllm:spec_decode_num_accepted_tokens_total",
                                    "vllm:spec_decode_num_draft_tokens_total"},
    "errors by status": {"http_requests_total"},
}


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def targets() -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            yield panel, target


def concrete(expr: str, model: str) -> str:
    return substitute_variables(expr, {"model_name": model, "__rate_interval": "1m"})


def queried_names() -> set[str]:
    return {name for _, target in targets() for name in metric_names(target["expr"])}


# --- Prometheus config -------------------------------------------------------------------------------------------

def test_prometheus_config_passes_promtool() -> None:
    result = subprocess.run([tool_path("promtool"), "check", "config", str(PROMETHEUS_YML)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_scrapes_the_server_metrics_every_5s() -> None:
    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "glm-serve"]
    assert job.get("scrape_interval", config["global"]["scrape_interval"]) == "5s"
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert [t for c in job["static_configs"] for t in c["targets"]] == ["server:8000"]
    jobs_in_dashboard = {t["expr"] for _, t in targets() if t["expr"].startswith("up{")}
    assert jobs_in_dashboard == {'up{job="glm-serve"}'}


# --- Grafana provisioning and dashboard --------------------------------------------------------------------------

def test_dashboard_json_is_what_the_generator_writes() -> None:
    result = subprocess.run([sys.executable, str(GRAFANA / "make_dashboard.py"), "--check"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_every_query_uses_the_provisioned_datasource() -> None:
    (source,) = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yaml").read_text())[
        "datasources"]
    assert (source["type"], source["url"]) == ("prometheus", "http://prometheus:9090")
    for panel, target in targets():
        for ref in (panel["datasource"], target["datasource"]):
            assert ref == {"type": "prometheus", "uid": source["uid"]}, panel["title"]
    for variable in dashboard()["templating"]["list"]:
        assert variable["datasource"]["uid"] == source["uid"]


def test_panels_have_unique_ids_and_do_not_overlap() -> None:
    panels = dashboard()["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells: dict[tuple[int, int], str] = {}
    for p in panels:
        grid = p["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, p["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{p['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = p["title"]
        assert p["targets"], f"{p['title']!r} has no query"


def test_dashboard_shows_what_the_issue_lists_with_percentiles() -> None:
    names = queried_names()
    for topic, needed in REQUIRED.items():
        assert needed <= names, f"no panel for {topic}: {sorted(needed - names)}"
    for histogram in ("time_to_first_token_seconds", "inter_token_latency_seconds", "e2e_request_latency_seconds"):
        quantiles = {t["expr"].split(",")[0] for _, t in targets() if f"vllm:{histogram}_bucket" in t["expr"]}
        assert quantiles == {f"histogram_quantile({q}" for q in ("0.5", "0.9", "0.99")}, histogram


def test_metric_name_extraction() -> None:
    """The checker below is only as good as this: functions, labels, keywords and windows are not names."""
    expr = ('sum by (position)(rate(vllm:a_total{model_name="$m", x=~"4xx|b{c}"}[$__rate_interval])) / '
            'ignoring(position) group_left sum(rate(vllm:b_total[5m] offset 1m)) + on() up > bool 0.5')
    assert metric_names(expr) == {"vllm:a_total", "vllm:b_total", "up"}
    assert metric_names("histogram_quantile(0.99, sum(rate(x_bucket[1m])) by (le))") == {"x_bucket"}
    assert substitute_variables("a{m=\"$model_name\"}[${w}]", {"model_name": "m1", "w": "1m"}) == 'a{m="m1"}[1m]'
    with pytest.raises(KeyError, match="undefined"):
        substitute_variables("$undefined", {})


def test_dashboard_queries_pass_promtool(tmp_path: Path) -> None:
    promtool = tool_path("promtool")
    rules = [{"record": f"dashboard:panel_{panel['id']}_{target['refId']}", "expr": concrete(target["expr"], "m")}
             for panel, target in targets()]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ratio_panels_compute_the_vllm_definitions(tmp_path: Path) -> None:
    """promtool evaluates the dashboard's ratio queries on synthetic counters (per minute: 10 verify rounds, 20
    drafted, 15 accepted = 9 at position 0 + 6 at position 1; 40 prefix-cache query tokens, 30 hits)."""
    promtool = tool_path("promtool")
    labels = '{model_name="m",engine="0"}'
    per_minute = {"vllm:spec_decode_num_drafts_total" + labels: 10,
                  "vllm:spec_decode_num_draft_tokens_total" + labels: 20,
                  "vllm:spec_decode_num_accepted_tokens_total" + labels: 15,
                  'vllm:spec_decode_num_accepted_tokens_per_pos_total{model_name="m",engine="0",position="0"}': 9,
                  'vllm:spec_decode_num_accepted_tokens_per_pos_total{model_name="m",engine="0",position="1"}': 6,
                  "vllm:prefix_cache_queries_total" + labels: 40, "vllm:prefix_cache_hits_total" + labels: 30}
    expected = {  # (panel, legend) -> {result labels: value x 1000}
        ("Speculative decoding acceptance rate", "all positions"): {"{}": 750},  # accepted / drafted
        ("Speculative decoding acceptance rate", "position {{position}}"): {'{position="0"}': 900,
                                                                           '{position="1"}': 600},
        ("Speculative decoding mean acceptance length", "tokens per verify step"): {"{}": 2500},  # 1 + 15/10
        ("Prefix-cache hit rate", "hit rate (tokens)"): {"{}": 750},
    }
    exprs = {(p["title"], t["legendFormat"]): concrete(t["expr"], "m") for p, t in targets()}
    checks = [{"expr": f"round(({exprs[key]}) * 1000)", "eval_time": "10m",
               "exp_samples": [{"labels": lab, "value": value} for lab, value in samples.items()]}
              for key, samples in expected.items()]
    spec = {"rule_files": [], "evaluation_interval": "1m", "tests": [{
        "interval": "1m", "promql_expr_test": checks,
        "input_series": [{"series": series, "values": f"0+{step}x10"} for series, step in per_minute.items()]}]}
    path = tmp_path / "ratio_test.yml"
    path.write_text(yaml.safe_dump(spec))
    result = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# --- Against the real server -------------------------------------------------------------------------------------

def exposed(text: str) -> tuple[set[str], set[str]]:
    """(every sample name the families declare, the names that have samples) of a /metrics page."""
    from prometheus_client.parser import text_string_to_metric_families

    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
                "summary": ("", "_sum", "_count", "_created")}
    declared, sampled = set(), set()
    for family in text_string_to_metric_families(text):
        declared |= {family.name + s for s in suffixes.get(family.type, ("",))}
        sampled |= {sample.name for sample in family.samples}
    return declared, sampled


def test_every_series_the_dashboard_queries_is_served(warm_server: tuple[ServedCommand, str]) -> None:
    server, _ = warm_server
    declared, sampled = exposed(httpx.get(server.url + "/metrics", timeout=10).text)
    wanted = queried_names() - PROMETHEUS_SERIES
    assert wanted - declared == set(), "the dashboard queries series the server does not expose"
    assert wanted - sampled == set(ON_DEMAND), "series with no sample after traffic (empty panels)"


@pytest.fixture
def prometheus(warm_server: tuple[ServedCommand, str], tmp_path: Path) -> Iterator[str]:
    """A real Prometheus with the repo's config, scraping the warm server every second; yields its query URL."""
    binary = tool_path("prometheus")
    server, _ = warm_server
    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [f"127.0.0.1:{server.port}"]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (tmp_path / "prometheus.log").open("w")
    proc = subprocess.Popen([binary, f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_ready(proc, f"http://127.0.0.1:{port}/-/ready", tmp_path / "prometheus.log")
        yield f"http://127.0.0.1:{port}/api/v1/query"
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path, timeout: float = 60.0) -> None:
    """Until Prometheus's readiness endpoint answers 200 (503 while the TSDB opens and the config loads)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"prometheus exited with {proc.returncode} before {url} answered 200:\n{log.read_text()}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    pytest.fail(f"{url} did not answer 200 within {timeout:.0f} s:\n{log.read_text()}")


class NotAnswered(Exception):
    """A query got a non-200 answer: 503 with a plain-text body while Prometheus starts, 4xx for a bad query."""


def query(url: str, expr: str) -> list[float]:
    response = httpx.get(url, params={"query": expr}, timeout=10)
    if response.status_code != 200:
        raise NotAnswered(f"{expr}: HTTP {response.status_code}: {response.text[:500]}")
    answer = response.json()
    assert answer["status"] == "success", f"{expr}: {answer}"
    return [float(item["value"][1]) for item in answer["data"]["result"]]


def wait_query(url: str, expr: str, timeout: float = 30.0) -> list[float]:
    """Until the query returns a non-empty result; non-200 answers and refused connections count as not yet."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            values = query(url, expr)
            if values:
                return values
            last = "an empty result"
        except (httpx.TransportError, NotAnswered) as error:
            last = f"{type(error).__name__}: {error}"
        time.sleep(0.25)
    raise AssertionError(f"no result for {expr} within {timeout:.0f} s; last: {last}")


def test_wait_query_retries_the_plain_text_503_of_a_starting_prometheus(monkeypatch: pytest.MonkeyPatch) -> None:
    starting = httpx.Response(503, text="Service Unavailable")
    ready = httpx.Response(200, json={"status": "success", "data": {"result": [{"value": [0, "1"]}]}})
    answers = iter([starting, starting, ready])
    monkeypatch.setattr(httpx, "get", lambda *args, **kwargs: next(answers))
    assert wait_query("http://prometheus/api/v1/query", "up", timeout=5.0) == [1.0]
    monkeypatch.setattr(httpx, "get", lambda *args, **kwargs: starting)
    with pytest.raises(AssertionError, match="within 1 s; last: NotAnswered: up: HTTP 503: Service Unavailable"):
        wait_query("http://prometheus/api/v1/query", "up", timeout=0.6)
    with pytest.raises(NotAnswered, match="HTTP 503"):
        query("http://prometheus/api/v1/query", "up")


def test_dashboard_queries_return_data_from_a_real_prometheus(prometheus: str,
                                                               warm_server: tuple[ServedCommand, str]) -> None:
    server, model = warm_server
    assert wait_query(prometheus, 'up{job="glm-serve"} == 1') == [1.0]
    send_traffic(server)  # after the first scrape, so that rates see it
    wait_query(prometheus, f'sum(increase(vllm:request_success_total{{model_name="{model}"}}[1m])) > 0')
    results = {}
    for panel, target in targets():
        values = query(prometheus, concrete(target["expr"], model))
        if not metric_names(target["expr"]) & set(ON_DEMAND):
            assert values, f"panel {panel['title']!r} query {target['refId']} is empty"
        results[(panel["title"], target["legendFormat"])] = values
    assert results[("Token throughput", "generation tokens/s")][0] > 0
    for title in ("Time to first token", "End-to-end request latency", "Inter-token latency"):
        p50 = results[(title, "p50")][0]
        assert math.isfinite(p50) and p50 > 0, (title, p50)
