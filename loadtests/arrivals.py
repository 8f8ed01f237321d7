"""When each request is sent: `--request-rate` with `--burstiness` (vLLM's arrival model).

Gaps between arrivals are gamma distributed with shape = burstiness and mean = 1 / rate: burstiness 1 is a Poisson
process (exponential gaps), < 1 burstier, > 1 more regular. An infinite rate sends everything at once.
"""

from __future__ import annotations

import math
import random


def arrival_offsets(num_requests: int, request_rate: float, burstiness: float, seed: int) -> list[float]:
    """Send time of each request in seconds after the benchmark starts; the first request goes at 0."""
    if not request_rate > 0:
        raise ValueError(f"request_rate must be > 0 (inf = all at once), got {request_rate}")
    if not (burstiness > 0 and math.isfinite(burstiness)):
        raise ValueError(f"burstiness must be a positive number, got {burstiness}")
    if math.isinf(request_rate):
        return [0.0] * num_requests
    # A generator of its own: the schedule does not depend on how many draws the dataset made.
    rng = random.Random(seed)
    scale = 1.0 / (request_rate * burstiness)
    offsets, now = [], 0.0
    for _ in range(num_requests):
        offsets.append(now)
        now += rng.gammavariate(burstiness, scale)
    return offsets
