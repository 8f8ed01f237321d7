"""Mean / median / std / percentiles of one latency metric, with numpy's default (linear) percentile rule."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100) of ascending values, interpolating linearly between ranks (numpy 'linear')."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must be in [0, 100], got {p}")
    rank = (len(sorted_values) - 1) * p / 100
    low = math.floor(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


def percentile_key(p: float) -> str:
    """vLLM's key spelling: 99 -> 'p99', 99.9 -> 'p99.9'."""
    return f"p{int(p)}" if p == int(p) else f"p{p}"


@dataclass(frozen=True)
class MetricSummary:
    # Milliseconds. All 0.0 when no value was measured (e.g. TPOT when every output had one token), as vLLM.
    mean: float
    median: float
    std: float  # population standard deviation (numpy's default ddof=0)
    # (percentile, value) pairs in the order of --metric-percentiles.
    percentiles: tuple[tuple[float, float], ...]
    # How many samples the summary is over (requests, or chunk gaps for ITL).
    count: int

    @classmethod
    def of_seconds(cls, values: Sequence[float], percentiles: Sequence[float]) -> MetricSummary:
        if not values:
            return cls(0.0, 0.0, 0.0, tuple((p, 0.0) for p in percentiles), 0)
        ms = sorted(v * 1000.0 for v in values)
        mean = math.fsum(ms) / len(ms)
        std = math.sqrt(math.fsum((v - mean) ** 2 for v in ms) / len(ms))
        return cls(
            mean=mean,
            median=percentile(ms, 50),
            std=std,
            percentiles=tuple((p, percentile(ms, p)) for p in percentiles),
            count=len(ms),
        )

    def to_dict(self, name: str) -> dict[str, float]:
        """vLLM result keys: mean_ttft_ms, median_ttft_ms, std_ttft_ms, p99_ttft_ms, ..."""
        result = {f"mean_{name}_ms": self.mean, f"median_{name}_ms": self.median, f"std_{name}_ms": self.std}
        for p, value in self.percentiles:
            result[f"{percentile_key(p)}_{name}_ms"] = value
        return result
