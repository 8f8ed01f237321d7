"""Speculative-decoding acceptance over one benchmark run, from the server's vLLM-named Prometheus counters.

The counters are read from GET /metrics before and after the run; the result is the difference, so traffic from
earlier runs does not count (traffic from other clients during the run does).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import httpx

_DRAFTS = "vllm:spec_decode_num_drafts_total"
_DRAFT_TOKENS = "vllm:spec_decode_num_draft_tokens_total"
_ACCEPTED = "vllm:spec_decode_num_accepted_tokens_total"
_ACCEPTED_PER_POS = "vllm:spec_decode_num_accepted_tokens_per_pos_total"
_SAMPLE_LINE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(\{[^}]*\})?\s+(\S+)")
_POSITION_LABEL = re.compile(r'position="(\d+)"')


@dataclass(frozen=True)
class SpecDecodeCounters:
    # Summed over label sets (engines, model names) of the counters named above.
    num_drafts: float
    num_draft_tokens: float
    num_accepted_tokens: float
    # Accepted tokens per draft position.
    accepted_per_pos: dict[int, float]

    @classmethod
    def parse(cls, text: str) -> SpecDecodeCounters | None:
        """From Prometheus text format; None when the server exports no spec-decode counter."""
        totals = {_DRAFTS: 0.0, _DRAFT_TOKENS: 0.0, _ACCEPTED: 0.0}
        per_pos: dict[int, float] = {}
        found = False
        for line in text.splitlines():
            match = _SAMPLE_LINE.match(line)
            if match is None or not match.group(1).startswith("vllm:spec_decode_"):
                continue
            name, labels, raw = match.groups()
            try:
                value = float(raw)
            except ValueError:
                continue
            if name == _ACCEPTED_PER_POS:
                position = _POSITION_LABEL.search(labels or "")
                if position is not None:
                    per_pos[int(position.group(1))] = per_pos.get(int(position.group(1)), 0.0) + value
                    found = True
            elif name in totals:
                totals[name] += value
                found = True
        if not found:
            return None
        return cls(totals[_DRAFTS], totals[_DRAFT_TOKENS], totals[_ACCEPTED], per_pos)


def spec_decode_delta(before: SpecDecodeCounters | None, after: SpecDecodeCounters | None) -> dict | None:
    """vLLM's result keys (acceptance rate in percent; length = 1 + accepted / drafts); None if nothing drafted."""
    if before is None or after is None:
        return None
    drafts = after.num_drafts - before.num_drafts
    draft_tokens = after.num_draft_tokens - before.num_draft_tokens
    accepted = after.num_accepted_tokens - before.num_accepted_tokens
    if draft_tokens <= 0 or drafts <= 0:
        return None
    positions = sorted(after.accepted_per_pos)
    return {
        "spec_decode_acceptance_rate": 100.0 * accepted / draft_tokens,
        "spec_decode_acceptance_length": 1.0 + accepted / drafts,
        "spec_decode_num_drafts": int(drafts),
        "spec_decode_draft_tokens": int(draft_tokens),
        "spec_decode_accepted_tokens": int(accepted),
        "spec_decode_per_position_acceptance_rates": [
            (after.accepted_per_pos[p] - before.accepted_per_pos.get(p, 0.0)) / drafts for p in positions
        ],
    }


async def fetch_spec_decode_counters(client: httpx.AsyncClient, base_url: str) -> SpecDecodeCounters | None:
    """None when /metrics is missing, unreachable or has no spec-decode counters (never fails the benchmark)."""
    try:
        response = await client.get(f"{base_url}/metrics", timeout=10.0)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    return SpecDecodeCounters.parse(response.text)
