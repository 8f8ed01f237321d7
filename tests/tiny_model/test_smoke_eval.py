"""A short evaluation of the committed embedded model through the project's engine (no training in CI).

Greedy decoding with fixed weights is deterministic, so the thresholds sit a little under what the committed model
scores on this subset; the full figures come from `python -m scripts.tiny_model.evaluate`.
"""

from __future__ import annotations

import pytest
import torch

from engine.embedded_model import EMBEDDED_MODEL_DIR, EVAL_CONVERSATIONS

pytestmark = pytest.mark.skipif(not (EMBEDDED_MODEL_DIR / "model.safetensors").is_file(),
                                reason="embedded checkpoint not trained yet")


def _subset(per_group: int):
    from scripts.tiny_model.corpus import read_jsonl

    picked, counts = [], {}
    for conv in read_jsonl(EMBEDDED_MODEL_DIR / EVAL_CONVERSATIONS):
        key = (conv.kind, conv.enable_thinking)
        if counts.get(key, 0) < per_group:
            counts[key] = counts.get(key, 0) + 1
            picked.append(conv)
    return picked


def test_smoke_evaluation():
    from scripts.tiny_model.evaluate import evaluate

    torch.set_num_threads(2)
    report, generations, scores = evaluate(EMBEDDED_MODEL_DIR, _subset(per_group=3), max_tokens=120)
    failures = [(s.kind, s.problems, g.text) for s, g in zip(scores, generations) if s.problems]
    assert report.turns == 24  # three per (kind, thinking) group
    # The engine's greedy tokens are the dense forward's argmax (same weights, fp32).
    assert report.engine_dense_agreement >= 0.99
    # The committed model scores 6/6, 5/6 exact, 6/6, 24/24, 18/18, echo 5/6 and 0.989 here; the bounds leave one
    # miss of slack.
    assert report.tool_call_rate >= 5 / 6, failures
    assert report.tool_call_exact_rate >= 4 / 6, failures
    assert report.arithmetic_rate >= 5 / 6, failures
    assert report.thinking_rate >= 23 / 24, failures
    assert report.no_call_rate >= 17 / 18, failures
    assert report.echo_rate >= 4 / 6, failures
    assert report.mtp_acceptance >= 0.95
