"""Sampler against a per-row pure-Python reference of each processing step (float64, no torch)."""

import math
from collections import Counter

import pytest
import torch

from engine.sampler import Sampler, SamplingBatch, SamplingRequestState, SamplingRow, process_logits
from engine.sampling_params import SamplingParams

NEG_INF = float("-inf")
V = 32


# ---------------------------------------------------------------- reference (one row, plain Python)
def ref_softmax(x):
    m = max(x)
    e = [math.exp(v - m) if v != NEG_INF else 0.0 for v in x]
    s = sum(e)
    return [v / s for v in e]


def ref_process(logits, params, prompt, output, stop_ids):
    """The documented pipeline for one row; returns processed logits (-inf where removed)."""
    x = [float(v) for v in logits]
    if len(output) < params.min_tokens:
        for t in stop_ids:
            x[t] = NEG_INF
    for t, b in (params.logit_bias or {}).items():
        x[t] += b
    r = params.repetition_penalty
    for t in set(prompt) | set(output):
        x[t] = x[t] / r if x[t] > 0 else x[t] * r
    for t, c in Counter(output).items():
        x[t] -= params.frequency_penalty * c + params.presence_penalty
    if params.is_greedy:
        return x
    x = [v / params.temperature for v in x]
    if params.min_p > 0:
        probs = ref_softmax(x)
        x = [NEG_INF if p < params.min_p * max(probs) else v for v, p in zip(x, probs)]
    if 0 < params.top_k < len(x):
        kth = sorted(x, reverse=True)[params.top_k - 1]
        x = [v if v >= kth else NEG_INF for v in x]
    if params.top_p < 1:
        probs = ref_softmax(x)
        order = sorted(range(len(x)), key=lambda i: -x[i])
        mass = 0.0
        for i in order:
            if mass >= params.top_p:
                x[i] = NEG_INF
            mass += probs[i]
    return x


def make_state(params, prompt=(), output=None, stop=frozenset(), generator=None):
    return SamplingRequestState(params, list(prompt), [] if output is None else output, frozenset(stop), generator)


def build(states, drafts=None):
    rows = [SamplingRow(s, tuple(d)) for s, d in zip(states, drafts or [()] * len(states))]
    return SamplingBatch.build(rows, V, "cpu")


def assert_matches_reference(processed, logits, states, drafts=None):
    for i, s in enumerate(states):
        output = list(s.output_token_ids) + list((drafts or [()] * len(states))[i])
        want = ref_process(logits[i].tolist(), s.params, s.prompt_token_ids, output, s.stop_token_ids)
        got = processed[i].tolist()
        assert [w == NEG_INF for w in want] == [g == NEG_INF for g in got], f"row {i}: masks differ"
        finite = [(w, g) for w, g in zip(want, got) if w != NEG_INF]
        assert torch.allclose(torch.tensor([g for _, g in finite]), torch.tensor([w for w, _ in finite]), atol=1e-4)


CASES = {
    "plain": SamplingParams(temperature=0.8),
    "greedy": SamplingParams(temperature=0),
    "top_k": SamplingParams(temperature=1.3, top_k=5),
    "top_k_above_vocab": SamplingParams(top_k=1000),
    "top_k_minus_one": SamplingParams(top_k=-1),
    "top_p": SamplingParams(temperature=0.9, top_p=0.6),
    "min_p": SamplingParams(temperature=0.7, min_p=0.1),
    "all_truncation": SamplingParams(temperature=1.1, top_k=10, top_p=0.8, min_p=0.05),
    "top_k_then_top_p": SamplingParams(temperature=5.0, top_k=6, top_p=0.5),  # order matters on a flat distribution
    "min_p_then_top_p": SamplingParams(temperature=3.0, min_p=0.5, top_p=0.5),
    "repetition": SamplingParams(repetition_penalty=1.7),
    "repetition_below_one": SamplingParams(repetition_penalty=0.6),
    "presence_frequency": SamplingParams(presence_penalty=1.5, frequency_penalty=-0.7),
    "bias": SamplingParams(logit_bias={3: 50.0, 4: -100.0, 30: 2.5}),
    "min_tokens": SamplingParams(min_tokens=4),
    "everything": SamplingParams(
        temperature=0.6, top_k=12, top_p=0.9, min_p=0.02, repetition_penalty=1.3, presence_penalty=0.4,
        frequency_penalty=0.3, logit_bias={7: 3.0}, min_tokens=10,
    ),
    "greedy_penalised": SamplingParams(temperature=0, repetition_penalty=2.0, frequency_penalty=1.0, min_tokens=9),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_step_matches_reference_alone(name):
    torch.manual_seed(hash(name) % 1000)
    state = make_state(CASES[name], prompt=[1, 2, 3, 5, 8], output=[2, 9, 9, 13], stop={0, 31})
    logits = torch.randn(1, V) * 3
    assert_matches_reference(process_logits(logits, build([state])), logits, [state])


def test_mixed_batch_matches_reference_per_row():
    torch.manual_seed(0)
    states = [
        make_state(p, prompt=[i % V, (3 * i) % V, 5], output=[(i + 7) % V] * (i % 3) + [1], stop={0, 2})
        for i, p in enumerate(CASES.values())
    ]
    logits = torch.randn(len(states), V) * 2
    before = logits.clone()
    processed = process_logits(logits, build(states))
    assert torch.equal(logits, before), "process_logits must not modify its input"
    assert_matches_reference(processed, logits, states)


def test_draft_rows_see_their_own_prefix():
    """Verify rows: row j counts output + drafts[:j] for penalties and min_tokens."""
    torch.manual_seed(1)
    params = SamplingParams(repetition_penalty=1.5, frequency_penalty=0.5, presence_penalty=0.3, min_tokens=3)
    state = make_state(params, prompt=[1, 2], output=[4, 4], stop={6})
    drafts = [(), (6,), (6, 4)]
    logits = torch.randn(3, V)
    processed = process_logits(logits, build([state] * 3, drafts))
    assert_matches_reference(processed, logits, [state] * 3, drafts)
    assert processed[0, 6] == NEG_INF and processed[1, 6] != NEG_INF  # 2 generated < 3, then 3 >= 3


def test_penalty_cache_follows_appended_output():
    """The cached counts update incrementally as the caller appends to its output list across steps."""
    torch.manual_seed(2)
    output = []
    state = make_state(SamplingParams(repetition_penalty=1.4, frequency_penalty=0.8), prompt=[3, 3, 7], output=output)
    for step in range(6):
        logits = torch.randn(1, V)
        assert_matches_reference(process_logits(logits, build([state])), logits, [state])
        assert state._num_counted == len(output)
        output.extend([step % 4, 11] if step % 2 else [step % 4])  # one or two new tokens per step


def test_min_tokens_masks_stop_ids_until_reached():
    stop = {5, 9}
    output = []
    state = make_state(SamplingParams(temperature=0, min_tokens=3), output=output, stop=stop)
    logits = torch.zeros(1, V)
    logits[0, 5], logits[0, 9], logits[0, 17] = 10.0, 9.0, 1.0
    sampler = Sampler(seed=0)
    for _ in range(3):
        assert sampler(logits, build([state])).sampled_token_ids.item() == 17
        output.append(17)
    assert sampler(logits, build([state])).sampled_token_ids.item() == 5


def test_top_p_keeps_exactly_the_smallest_set_at_the_boundary():
    """Four equal tokens (probs exactly 0.25): top_p = 0.5 keeps two; vLLM keeps the same count."""
    logits = torch.full((3, V), NEG_INF)
    logits[:, 10:14] = 0.0
    states = [make_state(SamplingParams(top_p=p)) for p in (0.5, 0.50001, 0.25)]
    kept = torch.isfinite(process_logits(logits, build(states))).sum(-1)
    assert kept.tolist() == [2, 3, 1]


def test_greedy_is_argmax_of_penalised_logits():
    torch.manual_seed(3)
    logits = torch.randn(8, V)
    states = [make_state(SamplingParams(temperature=0)) for _ in range(8)]
    out = Sampler(seed=0)(logits, build(states))
    assert torch.equal(out.sampled_token_ids, logits.argmax(-1))
    biased = make_state(SamplingParams(temperature=0, logit_bias={int(logits[0].argmin()): 100}))
    assert Sampler()(logits[:1], build([biased])).sampled_token_ids.item() == int(logits[0].argmin())


def test_greedy_ties_break_to_lowest_id():
    logits = torch.zeros(1, V)
    logits[0, [4, 9, 20]] = 2.0
    assert Sampler()(logits, build([make_state(SamplingParams(temperature=0))])).sampled_token_ids.item() == 4


def test_sampled_tokens_respect_truncation_masks():
    torch.manual_seed(4)
    params = [CASES[n] for n in ("top_k", "top_p", "min_p", "all_truncation", "everything")] * 20
    states = [make_state(p, prompt=[1, 2], output=[3]) for p in params]
    logits = torch.randn(len(states), V) * 2
    batch = build(states)
    processed = process_logits(logits, batch)
    for _ in range(5):
        tokens = Sampler()(logits, batch).sampled_token_ids
        assert torch.isfinite(processed.gather(1, tokens[:, None])).all()


def chi_square_critical(df: int, z: float = 4.265) -> float:
    """Upper quantile of chi-square(df) by Wilson-Hilferty; z = 4.265 is the 1e-5 normal tail."""
    c = 2.0 / (9.0 * df)
    return df * (1.0 - c + z * math.sqrt(c)) ** 3


def chi_square(counts: torch.Tensor, probs: torch.Tensor) -> tuple[float, int]:
    """Pearson statistic over categories with expected count >= 5 (the rest pooled), and its degrees of freedom."""
    expected = probs.double() * counts.sum()
    big = expected >= 5
    obs = torch.cat([counts.double()[big], counts.double()[~big].sum().reshape(1)])
    exp = torch.cat([expected[big], expected[~big].sum().reshape(1)])
    assert obs[exp == 0].sum() == 0, "draws fell on zero-probability tokens"
    keep = exp > 0
    return float(((obs[keep] - exp[keep]) ** 2 / exp[keep]).sum()), int(keep.sum()) - 1


@pytest.mark.parametrize("name", ["plain", "top_k", "top_p", "min_p", "everything"])
def test_sampling_distribution_matches_processed_probs(name):
    """20k draws of one row (batched copies) follow softmax(processed logits): chi-square at the 1e-5 level."""
    torch.manual_seed(5)
    logits = torch.randn(1, V) * 1.5
    num_draws = 20000
    state = make_state(CASES[name], prompt=[1, 2], output=[3, 3])
    batch = build([state] * num_draws)
    probs = process_logits(logits, build([state])).softmax(-1)[0]
    tokens = Sampler(seed=11)(logits.expand(num_draws, V).contiguous(), batch).sampled_token_ids
    stat, df = chi_square(torch.bincount(tokens, minlength=V), probs)
    assert stat < chi_square_critical(df), (stat, df)


def test_seeded_request_is_independent_of_batch_composition():
    """Same seed -> same tokens alone and inside batches of other (seeded, unseeded, greedy) rows, at any position."""
    torch.manual_seed(6)
    steps = 12
    step_logits = [torch.randn(1, V) for _ in range(steps)]
    params = SamplingParams(temperature=1.0, top_p=0.95, seed=1234, presence_penalty=0.2)

    def run(batch_size: int, position: int, sampler_seed: int) -> list[int]:
        output: list[int] = []
        target = make_state(params, prompt=[1, 2, 3], output=output)
        others = [
            make_state(SamplingParams(seed=i) if i % 3 == 0 else SamplingParams(temperature=i % 2), prompt=[i])
            for i in range(batch_size - 1)
        ]
        sampler = Sampler(seed=sampler_seed)
        for logits in step_logits:
            states = others[:position] + [target] + others[position:]
            batch_logits = torch.randn(batch_size, V)
            batch_logits[position] = logits[0]
            token = sampler(batch_logits, build(states)).sampled_token_ids[position].item()
            output.append(token)
        return output

    alone = run(1, 0, sampler_seed=0)
    assert run(7, 3, sampler_seed=1) == alone
    assert run(5, 4, sampler_seed=2) == alone
    assert len(set(alone)) > 1  # it really samples
    other_seed = dataclass_replace_seed(params, 99)
    output: list[int] = []
    state = make_state(other_seed, prompt=[1, 2, 3], output=output)
    for logits in step_logits:
        output.append(Sampler(seed=0)(logits, build([state])).sampled_token_ids.item())
    assert output != alone


def dataclass_replace_seed(params: SamplingParams, seed: int) -> SamplingParams:
    import dataclasses

    return dataclasses.replace(params, seed=seed)


def test_unseeded_rows_reproducible_with_sampler_seed():
    torch.manual_seed(7)
    logits = torch.randn(16, V)
    batch = build([make_state(SamplingParams()) for _ in range(16)])
    a = Sampler(seed=3)(logits, batch).sampled_token_ids
    assert torch.equal(a, Sampler(seed=3)(logits, batch).sampled_token_ids)
    assert not torch.equal(a, Sampler(seed=4)(logits, batch).sampled_token_ids)


def test_logprobs_are_raw_log_softmax():
    torch.manual_seed(8)
    logits = torch.randn(4, V) * 2
    params = [
        SamplingParams(logprobs=5, temperature=0.5, repetition_penalty=2.0),
        SamplingParams(logprobs=0, temperature=0),
        SamplingParams(),  # no logprobs asked: still gets the batch's columns, ignored by the caller
        SamplingParams(logprobs=2, top_k=3, logit_bias={0: 30}),
    ]
    states = [make_state(p, prompt=[1, 2], output=[2]) for p in params]
    out = Sampler(seed=0)(logits, build(states))
    raw = torch.log_softmax(logits, -1)
    lp = out.logprobs
    assert lp is not None and lp.top_token_ids.shape == (4, 5) and lp.top_logprobs.shape == (4, 5)
    tokens = out.sampled_token_ids
    assert tokens[3].item() == 0  # the bias decides the token, but the logprob stays raw
    torch.testing.assert_close(lp.sampled_logprobs, raw.gather(1, tokens[:, None]).squeeze(1))
    for i in range(4):
        order = sorted(range(V), key=lambda t: -raw[i, t].item())
        assert lp.top_token_ids[i].tolist() == order[:5]
        torch.testing.assert_close(lp.top_logprobs[i], raw[i, order[:5]])
        assert lp.sampled_ranks[i].item() == order.index(tokens[i].item()) + 1


def test_no_logprobs_when_none_asked_and_zero_columns_for_logprobs_zero():
    logits = torch.randn(2, V)
    assert Sampler()(logits, build([make_state(SamplingParams())] * 2)).logprobs is None
    lp = Sampler()(logits, build([make_state(SamplingParams(logprobs=0))] * 2)).logprobs
    assert lp is not None and lp.top_token_ids.shape == (2, 0) and lp.sampled_logprobs.shape == (2,)


def test_compute_probs():
    torch.manual_seed(9)
    states = [make_state(CASES[n], prompt=[1], output=[2]) for n in ("greedy", "everything", "top_p", "plain")]
    logits = torch.randn(4, V)
    batch = build(states)
    probs = Sampler().compute_probs(logits, batch)
    torch.testing.assert_close(probs.sum(-1), torch.ones(4))
    one_hot = torch.zeros(V)
    one_hot[logits[0].argmax()] = 1.0
    assert torch.equal(probs[0], one_hot)
    torch.testing.assert_close(probs[1:], process_logits(logits, batch)[1:].softmax(-1))


def test_bad_logits_raise():
    batch = build([make_state(SamplingParams())] * 2)
    with pytest.raises(ValueError, match="logits"):
        Sampler()(torch.randn(3, V), batch)
    with pytest.raises(ValueError, match="logits"):
        Sampler()(torch.randn(2, V, dtype=torch.float64), batch)
    with pytest.raises(ValueError, match="logits"):
        Sampler().compute_probs(torch.randn(V), batch)
