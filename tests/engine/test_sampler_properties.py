"""Hypothesis properties of the sampler's truncation and batching, on arbitrary small logits."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.sampler import Sampler, SamplingBatch, SamplingRequestState, SamplingRow, process_logits
from engine.sampling_params import SamplingParams

V = 12
finite_logits = st.lists(st.floats(-20, 20, allow_nan=False, width=32), min_size=V, max_size=V)


def batch_of(params_list, vocab_size=V):
    rows = [SamplingRow(SamplingRequestState(p, [0, 1], [2], frozenset({3}))) for p in params_list]
    return SamplingBatch.build(rows, vocab_size, "cpu")


@settings(max_examples=150, deadline=None)
@given(values=finite_logits, top_k=st.integers(1, V + 3))
def test_top_k_keeps_the_k_largest_and_their_ties(values, top_k):
    logits = torch.tensor([values])
    kept = torch.isfinite(process_logits(logits, batch_of([SamplingParams(top_k=top_k)])))[0]
    k = min(top_k, V)
    kth = logits[0].sort(descending=True).values[k - 1]
    assert torch.equal(kept, logits[0] >= kth)
    assert int(kept.sum()) >= k


@settings(max_examples=150, deadline=None)
@given(values=finite_logits, top_p=st.floats(0.01, 1.0))
def test_top_p_keeps_a_minimal_top_set_reaching_top_p(values, top_p):
    logits = torch.tensor([values])
    kept = torch.isfinite(process_logits(logits, batch_of([SamplingParams(top_p=top_p)])))[0]
    probs = logits[0].double().softmax(-1)
    assert kept[probs.argmax()]
    # a top set: every kept token is at least as likely as every dropped one
    if (~kept).any():
        assert probs[kept].min() >= probs[~kept].max() - 1e-6
        # reaches top_p, and is minimal: without its least likely token it would not (float32 slack)
        assert probs[kept].sum() >= top_p - 1e-5
    assert probs[kept].sum() - probs[kept].min() < top_p + 1e-5


@settings(max_examples=150, deadline=None)
@given(values=finite_logits, min_p=st.floats(0.0, 1.0), temperature=st.floats(0.1, 3.0))
def test_min_p_keeps_tokens_above_the_scaled_max(values, min_p, temperature):
    logits = torch.tensor([values])
    kept = torch.isfinite(process_logits(logits, batch_of([SamplingParams(min_p=min_p, temperature=temperature)])))
    probs = (logits[0].double() / temperature).softmax(-1)
    ratio = probs / probs.max()
    clear = (ratio - min_p).abs() > 1e-4  # away from the boundary, where float32 may round either way
    assert torch.equal(kept[0][clear], (ratio >= min_p)[clear])
    assert kept[0][probs.argmax()]


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            finite_logits,
            st.sampled_from([0.0, 0.7, 1.0]),
            st.sampled_from([0, 3]),
            st.sampled_from([1.0, 0.8]),
            st.sampled_from([1.0, 1.3]),
        ),
        min_size=2,
        max_size=6,
    ),
    index=st.integers(0, 5),
)
def test_each_row_is_processed_independently_of_the_batch(rows, index):
    params = [SamplingParams(temperature=t, top_k=k, top_p=p, repetition_penalty=r) for _, t, k, p, r in rows]
    logits = torch.tensor([v for v, *_ in rows])
    together = process_logits(logits, batch_of(params))
    i = index % len(rows)
    alone = process_logits(logits[i : i + 1], batch_of(params[i : i + 1]))
    assert torch.equal(together[i], alone[0])


@settings(max_examples=60, deadline=None)
@given(values=st.lists(finite_logits, min_size=1, max_size=4))
def test_greedy_equals_argmax(values):
    logits = torch.tensor(values)
    out = Sampler(seed=0)(logits, batch_of([SamplingParams(temperature=0)] * len(values)))
    assert torch.equal(out.sampled_token_ids, logits.argmax(-1))
