"""PNG plots of a run (latency CDFs) and of a concurrency sweep (throughput and p99 latency vs concurrency).

matplotlib is imported here only (dev extra), with the non-interactive Agg backend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from loadtests.metrics import latency_samples
from loadtests.request_func import RequestFuncOutput

CDF_METRICS = (("ttft", "TTFT"), ("tpot", "TPOT"), ("itl", "ITL"), ("e2el", "E2E latency"))


def _pyplot():
    try:
        import matplotlib
    except ImportError as e:  # NOTE: the dev extra installs it; the benchmark itself runs without plots
        raise RuntimeError("plots need matplotlib (pip install matplotlib), or pass --no-plots") from e
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_latency_cdfs(runs: Mapping[str, Sequence[RequestFuncOutput]], path: Path, title: str) -> Path:
    """One panel per metric, one empirical CDF line per run label (e.g. per concurrency of a sweep)."""
    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for label, outputs in runs.items():
        samples = latency_samples(outputs)
        for ax, (name, _) in zip(axes.flat, CDF_METRICS):
            values = sorted(v * 1000.0 for v in samples[name])
            if values:
                ax.step(values, [(i + 1) / len(values) for i in range(len(values))], where="post", label=label)
    for ax, (_, name) in zip(axes.flat, CDF_METRICS):
        ax.set_title(f"{name} CDF")
        ax.set_xlabel("ms")
        ax.set_ylabel("fraction of samples")
        ax.grid(True, alpha=0.3)
        if ax.lines:
            ax.legend(fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    return _save(plt, fig, path)


def plot_sweep(points: Sequence[Mapping[str, Any]], path: Path, title: str) -> Path:
    """`points` are sweep results (one per concurrency) holding vLLM result keys incl. p99_*_ms."""
    plt = _pyplot()
    xs = [p["max_concurrency"] for p in points]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    left.plot(xs, [p["output_throughput"] for p in points], "o-", label="output tok/s")
    left.plot(xs, [p["total_token_throughput"] for p in points], "s--", label="total tok/s")
    left.set_ylabel("tokens / s")
    requests_axis = left.twinx()
    requests_axis.plot(xs, [p["request_throughput"] for p in points], "^:", color="gray", label="req/s")
    requests_axis.set_ylabel("requests / s")
    left.set_title("Throughput vs concurrency")
    left.legend(loc="upper left", fontsize="small")
    requests_axis.legend(loc="lower right", fontsize="small")
    for name, label in CDF_METRICS:
        key = f"p99_{name}_ms"
        if all(key in p for p in points):
            right.plot(xs, [p[key] for p in points], "o-", label=f"p99 {label}")
    right.set_ylabel("ms")
    right.set_yscale("log")
    right.set_title("p99 latency vs concurrency")
    right.legend(fontsize="small")
    for ax in (left, right):
        ax.set_xlabel("max concurrency")
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.grid(True, alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(plt, fig, path)


def _save(plt, fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
