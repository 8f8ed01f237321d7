"""Writes docker/grafana/dashboards/glm-serve.json, the Grafana dashboard of the compose stack.

    python docker/grafana/make_dashboard.py          # rewrite the JSON
    python docker/grafana/make_dashboard.py --check  # exit 1 when the committed JSON differs (tests/docker runs it)

The queries use vLLM's metric names (contract section 8), so the dashboard also reads a vLLM server. Rates use
Grafana's `$__rate_interval`; `$model_name` is the dashboard variable (the served name, a label of every engine
metric). The data source is the provisioned one, by uid (provisioning/datasources/prometheus.yaml).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

DASHBOARD_PATH = Path(__file__).resolve().parent / "dashboards" / "glm-serve.json"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
MODEL = 'model_name="$model_name"'
RATE = "[$__rate_interval]"
QUANTILES = (0.5, 0.9, 0.99)
Target = tuple[str, str]  # (PromQL expression, legend)


def rate(metric: str, selector: str = MODEL, by: str = "") -> str:
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping}(rate({metric}{{{selector}}}{RATE}))"


def quantiles(histogram: str) -> list[Target]:
    """p50/p90/p99 of a histogram over the rate window (`histogram` without `_bucket`)."""
    return [(f"histogram_quantile({q}, sum by (le) (rate({histogram}_bucket{{{MODEL}}}{RATE})))", f"p{round(q * 100)}")
            for q in QUANTILES]


def panel(title: str, targets: list[Target], unit: str, kind: str = "timeseries", description: str = "",
          **defaults: Any) -> dict[str, Any]:
    """A panel without position: `layout` adds `id` and `gridPos`."""
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "fieldConfig": {"defaults": {"unit": unit, **defaults}, "overrides": []},
        "options": _options(kind),
        "targets": [{"datasource": DATASOURCE, "refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend}
                    for i, (expr, legend) in enumerate(targets)],
    }


def _options(kind: str) -> dict[str, Any]:
    if kind == "stat":
        return {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                "colorMode": "value", "graphMode": "area", "textMode": "auto"}
    return {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "none"}}


def stat_panels() -> list[dict[str, Any]]:
    return [
        panel("Server up", [('up{job="glm-serve"}', "{{instance}}")], "none", "stat",
              "1 while Prometheus reaches /metrics.",
              mappings=[{"type": "value", "options": {"0": {"text": "DOWN", "color": "red"},
                                                      "1": {"text": "UP", "color": "green"}}}]),
        panel("Requests running", [(f"vllm:num_requests_running{{{MODEL}}}", "running")], "none", "stat"),
        panel("Requests waiting", [(f"vllm:num_requests_waiting{{{MODEL}}}", "waiting")], "none", "stat"),
        panel("KV-cache usage", [(f"vllm:kv_cache_usage_perc{{{MODEL}}}", "used")], "percentunit", "stat",
              min=0, max=1),
        panel("Generation tokens/s", [(rate("vllm:generation_tokens_total"), "tokens/s")], "none", "stat"),
        panel("Prefix-cache hit rate", [(_prefix_hit_rate(), "hit rate")], "percentunit", "stat", min=0, max=1),
    ]


def _prefix_hit_rate() -> str:
    return f'{rate("vllm:prefix_cache_hits_total")} / {rate("vllm:prefix_cache_queries_total")}'


def graph_panels() -> list[dict[str, Any]]:
    accepted = rate("vllm:spec_decode_num_accepted_tokens_total")
    return [
        panel("Requests running / waiting", [(f"vllm:num_requests_running{{{MODEL}}}", "running"),
                                             (f"vllm:num_requests_waiting{{{MODEL}}}", "waiting")], "none"),
        panel("Token throughput", [(rate("vllm:prompt_tokens_total"), "prompt tokens/s"),
                                   (rate("vllm:generation_tokens_total"), "generation tokens/s")], "none"),
        panel("Time to first token", quantiles("vllm:time_to_first_token_seconds"), "s",
              description="Arrival to first token."),
        panel("Inter-token latency", quantiles("vllm:inter_token_latency_seconds"), "s",
              description="Time between two token deliveries of one request (decode step)."),
        panel("End-to-end request latency", quantiles("vllm:e2e_request_latency_seconds"), "s",
              description="Arrival to last token."),
        panel("Queue time", quantiles("vllm:request_queue_time_seconds"), "s",
              description="Waiting before the first schedule."),
        panel("KV-cache usage", [(f"vllm:kv_cache_usage_perc{{{MODEL}}}", "KV blocks in use")], "percentunit",
              min=0, max=1),
        panel("Prefix-cache hit rate", [(_prefix_hit_rate(), "hit rate (tokens)")], "percentunit", min=0, max=1,
              description="Prompt tokens served from the prefix cache / prompt tokens looked up."),
        panel("Speculative decoding acceptance rate",
              [(f'{accepted} / {rate("vllm:spec_decode_num_draft_tokens_total")}', "all positions"),
               (f'{rate("vllm:spec_decode_num_accepted_tokens_per_pos_total", by="position")} / ignoring(position) '
                f'group_left {rate("vllm:spec_decode_num_drafts_total")}', "position {{position}}")],
              "percentunit", min=0, max=1, description="MTP drafts accepted / drafted (empty without MTP)."),
        panel("Speculative decoding mean acceptance length",
              [(f'1 + {accepted} / {rate("vllm:spec_decode_num_drafts_total")}', "tokens per verify step")],
              "none", description="1 + accepted drafts per verify step (empty without MTP)."),
        panel("Finished requests by reason",
              [(rate("vllm:request_success_total", by="finished_reason"), "{{finished_reason}}")], "reqps"),
        panel("Errors by status",
              [('sum by (status) (rate(http_requests_total{status=~"4xx|5xx"}' + RATE + "))", "HTTP {{status}}"),
               ("sum by (reason) (rate(vllm:admission_rejections_total" + RATE + "))", "rejected: {{reason}}")],
              "reqps", description="HTTP 4xx/5xx answers, and admission rejections (503) by reason."),
        panel("Preemptions", [(rate("vllm:num_preemptions_total"), "preemptions/s")], "none"),
        panel("Tokens per engine step", quantiles("vllm:iteration_tokens_total"), "none"),
    ]


def layout(stats: list[dict[str, Any]], graphs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stats in one 4-high row (24 columns shared), then graphs two per 8-high row."""
    panels, width = [], 24 // len(stats)
    for i, p in enumerate(stats):
        panels.append({"id": i + 1, "gridPos": {"h": 4, "w": width, "x": i * width, "y": 0}, **p})
    for i, p in enumerate(graphs):
        grid = {"h": 8, "w": 12, "x": (i % 2) * 12, "y": 4 + (i // 2) * 8}
        panels.append({"id": len(stats) + i + 1, "gridPos": grid, **p})
    return panels


def dashboard() -> dict[str, Any]:
    return {
        "uid": "glm-serve",
        "title": "glm-serve",
        "description": "glm-serve (vLLM-compatible metrics): load, throughput, latency, KV cache, speculation, errors.",
        "tags": ["glm-serve", "vllm", "llm"],
        "editable": True,
        "graphTooltip": 1,
        "refresh": "5s",
        "schemaVersion": 39,
        "time": {"from": "now-30m", "to": "now"},
        "timezone": "browser",
        "templating": {"list": [{
            "name": "model_name", "label": "model", "type": "query", "datasource": DATASOURCE,
            "query": {"query": "label_values(vllm:num_requests_running, model_name)", "refId": "model_name"},
            "definition": "label_values(vllm:num_requests_running, model_name)",
            "refresh": 2, "sort": 1, "includeAll": False, "multi": False, "current": {}, "options": [],
        }]},
        "annotations": {"list": []},
        "panels": layout(stat_panels(), graph_panels()),
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the committed JSON is stale")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not DASHBOARD_PATH.is_file() or DASHBOARD_PATH.read_text(encoding="utf-8") != text:
            sys.exit(f"{DASHBOARD_PATH} is stale: run python {Path(__file__).as_posix()}")
        return
    DASHBOARD_PATH.write_text(text, encoding="utf-8")
    print(f"wrote {DASHBOARD_PATH}")


if __name__ == "__main__":
    main()
