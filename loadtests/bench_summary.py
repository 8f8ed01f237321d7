"""results/summary.md: the figures of a `make bench` run (bench_suite) as markdown tables, read from its JSON files."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path

from loadtests.machine_info import cpu_model


def _latest(directory: Path, pattern: str) -> dict | None:
    files = sorted(directory.glob(pattern), key=lambda p: p.stat().st_mtime)
    return json.loads(files[-1].read_text()) if files else None


def offline_table(result: Mapping) -> list[str]:
    lines = [f"### Offline comparison ({result['num_prompts']} prompts, {result['input_tokens']} prompt / "
             f"{result['output_tokens']} output tokens; {result['machine']})", "",
             "| engine | seconds | output tok/s | total tok/s | glm-serve speed-up | identical to glm-serve |",
             "|---|---|---|---|---|---|"]
    ours = result["rows"][0]["seconds"]
    for row in result["rows"]:
        lines.append(f"| {row['name']} | {row['seconds']:.2f} | {row['output_tok_s']:.1f} | {row['total_tok_s']:.1f}"
                     f" | {row['seconds'] / ours:.2f}x | {row['identical']}/{result['num_prompts']} |")
    return lines


def sweep_table(result: Mapping) -> list[str]:
    lines = [f"### Serving sweep ({result['label']}, {result['model_id']}, {result['num_prompts']} requests per "
             "point)", "",
             "| concurrency | req/s | output tok/s | p50 TTFT ms | p99 TTFT ms | p50 TPOT ms | p99 TPOT ms | "
             "p99 ITL ms | failed |", "|---|---|---|---|---|---|---|---|---|"]
    for p in result["points"]:
        lines.append(f"| {p['max_concurrency']} | {p['request_throughput']:.2f} | {p['output_throughput']:.1f} | "
                     f"{p['p50_ttft_ms']:.0f} | {p['p99_ttft_ms']:.0f} | {p['p50_tpot_ms']:.1f} | "
                     f"{p['p99_tpot_ms']:.1f} | {p['p99_itl_ms']:.1f} | {p['failed']} |")
    return lines


def overhead_table(result: Mapping) -> list[str]:
    cpu = result.get("cpu_seconds_per_1k_output_tokens", {})
    repeats = ", ".join(f"{r:.2f}" for r in result.get("ratio_per_repeat", []))
    return [f"### Server overhead ({result['num_prompts']} prompts of {result['input_len']} tokens, "
            f"{result['output_len']} output tokens each, concurrency {result['max_concurrency']}, best of "
            f"{result.get('repeats', 1)} interleaved)", "",
            "| offline output tok/s | server output tok/s | ratio (target >= 0.85) | ratio per repeat |",
            "|---|---|---|---|",
            f"| {result['offline_output_throughput']:.1f} | {result['serving_output_throughput']:.1f} | "
            f"**{result['ratio']:.3f}** | {repeats} |", "",
            "CPU seconds per 1,000 output tokens (least over the repeats): "
            + ", ".join(f"{name.replace('_', ' ')} {seconds:.2f}" for name, seconds in cpu.items())]


TEXT_STEPS = {"spec": "Speculative decoding (MTP) on/off", "profile": "Where a decode step's time goes (embedded model)",
              "profile_random": "Where a decode step's time goes (tiny random model)"}


def write_summary(out: Path, steps: Mapping[str, Mapping]) -> Path:
    """`steps`: step name -> {"command": ..., "seconds": ...}; text steps are copied from <step>.log."""
    load = "/".join(f"{v:.2f}" for v in os.getloadavg())
    lines = [f"# make bench, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "",
             f"Machine: {cpu_model()}, {os.cpu_count()} cores; load average at the end {load}.", ""]
    for name, table in (("offline", _table(out / "offline.json", offline_table)),
                        ("sweep", _table_of(_latest(out / "sweep", "*sweep*.json"), sweep_table)),
                        ("overhead", _table(out / "overhead" / "server_overhead.json", overhead_table))):
        if table:
            lines += [*table, ""]
    for name, title in TEXT_STEPS.items():
        if name in steps and (out / f"{name}.log").exists():
            text = (out / f"{name}.log").read_text().splitlines()
            lines += [f"### {title}", "", "```", *(line for line in text if line.strip()), "```", ""]
    lines += ["### Commands", "", "| step | seconds | command |", "|---|---|---|"]
    lines += [f"| {name} | {step['seconds']:.0f} | `{step['command']}` |" for name, step in steps.items()]
    path = out / "summary.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _table(path: Path, render) -> list[str]:
    return render(json.loads(path.read_text())) if path.exists() else []


def _table_of(result: Mapping | None, render) -> list[str]:
    return render(result) if result else []
