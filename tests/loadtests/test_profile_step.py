"""profile_step splits a decode step into parts that add up to the step and cover the model's pieces."""

import pytest

from loadtests.profile_step import ExclusiveTimer, profile


def test_exclusive_timer_subtracts_nested_calls():
    class Work:
        def outer(self):
            return self.inner() + 1

        def inner(self):
            return sum(range(20000))

    timer, work = ExclusiveTimer(), Work()
    timer.wrap(work, "inner", "inner")
    timer.wrap(work, "outer", "outer")
    assert work.outer() == sum(range(20000)) + 1
    assert set(timer.totals) == {"inner", "outer"} and timer.totals["inner"] > timer.totals["outer"] > 0


def test_decode_step_parts_add_up():
    pytest.importorskip("engine.embedded_model")
    total, parts = profile(None, batch_size=2, steps=2, prompt_len=16)
    assert total > 0 and sum(parts.values()) == pytest.approx(total)
    for label in ("scheduler", "input preparation", "attention core (KV write/gather, SDPA)", "sampling",
                  "MoE (router, routed + shared experts)", "LM head (logits)"):
        assert parts[label] > 0, label
