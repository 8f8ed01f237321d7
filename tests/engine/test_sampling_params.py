import dataclasses

import pytest

from engine.sampling_params import SamplingParams


def test_defaults_match_vllm():
    p = SamplingParams()
    assert (p.n, p.temperature, p.top_p, p.top_k, p.min_p) == (1, 1.0, 1.0, 0, 0.0)
    assert (p.presence_penalty, p.frequency_penalty, p.repetition_penalty) == (0.0, 0.0, 1.0)
    assert p.logit_bias is None and p.seed is None and p.max_tokens is None and p.logprobs is None
    assert p.stop == () and p.stop_token_ids == () and p.min_tokens == 0
    assert p.skip_special_tokens and not p.ignore_eos and not p.include_stop_str_in_output
    assert not p.is_greedy and not p.has_penalties


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        SamplingParams().temperature = 0.5  # type: ignore[misc]


@pytest.mark.parametrize("temperature, greedy", [(0.0, True), (0, True), (1e-6, True), (1e-4, False), (1.5, False)])
def test_is_greedy(temperature, greedy):
    assert SamplingParams(temperature=temperature).is_greedy is greedy


def test_greedy_resets_truncation_knobs():
    p = SamplingParams(temperature=0, top_p=0.5, top_k=3, min_p=0.2)
    assert (p.top_p, p.top_k, p.min_p) == (1.0, 0, 0.0)
    q = SamplingParams(temperature=0.7, top_p=0.5, top_k=3, min_p=0.2)
    assert (q.top_p, q.top_k, q.min_p) == (0.5, 3, 0.2)


@pytest.mark.parametrize(
    "field, value",
    [
        ("n", 0),
        ("n", 1.5),
        ("temperature", -0.1),
        ("temperature", float("nan")),
        ("temperature", "1"),
        ("top_p", 0.0),
        ("top_p", 1.01),
        ("top_k", -2),
        ("top_k", 2.0),
        ("top_k", True),
        ("min_p", -0.1),
        ("min_p", 1.5),
        ("presence_penalty", 2.01),
        ("presence_penalty", -2.5),
        ("frequency_penalty", 3.0),
        ("frequency_penalty", -2.01),
        ("repetition_penalty", 0.0),
        ("repetition_penalty", -1.0),
        ("seed", 1.0),
        ("seed", "7"),
        ("max_tokens", 0),
        ("min_tokens", -1),
        ("logprobs", -1),
        ("logprobs", 21),
        ("ignore_eos", 1),
        ("skip_special_tokens", None),
        ("include_stop_str_in_output", "yes"),
        ("stop", ["ok", 3]),
        ("stop", ""),
        ("stop", ["a", ""]),
        ("stop", 5),
        ("stop_token_ids", [1, -2]),
        ("stop_token_ids", [1.0]),
        ("stop_token_ids", "12"),
        ("logit_bias", {5: 101}),
        ("logit_bias", {5: -100.5}),
        ("logit_bias", {"x": 1}),
        ("logit_bias", {-1: 1}),
        ("logit_bias", [(1, 2.0)]),
    ],
)
def test_invalid_values_raise_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        SamplingParams(**{field: value})


def test_min_tokens_above_max_tokens_names_both():
    with pytest.raises(ValueError, match="min_tokens.*max_tokens"):
        SamplingParams(min_tokens=5, max_tokens=4)
    assert SamplingParams(min_tokens=4, max_tokens=4).min_tokens == 4
    assert SamplingParams(min_tokens=1000).max_tokens is None  # no budget: min_tokens is not capped


def test_boundaries_are_accepted():
    p = SamplingParams(
        top_p=1.0, top_k=-1, min_p=1.0, presence_penalty=-2, frequency_penalty=2, logprobs=20, seed=0,
        logit_bias={1: 100, 2: -100},
    )
    assert p.top_k == -1 and p.logprobs == 20 and p.logit_bias == {1: 100.0, 2: -100.0}
    assert SamplingParams(logprobs=0).logprobs == 0


def test_normalisation():
    p = SamplingParams(stop="</s>", stop_token_ids=[7, 9], logit_bias={"12": 3})
    assert p.stop == ("</s>",) and p.stop_token_ids == (7, 9) and p.logit_bias == {12: 3.0}
    assert SamplingParams(stop=["a", "b"]).stop == ("a", "b")
    assert SamplingParams(logit_bias={}).logit_bias is None


def test_has_penalties():
    assert SamplingParams(repetition_penalty=1.1).has_penalties
    assert SamplingParams(presence_penalty=-0.5).has_penalties
    assert SamplingParams(frequency_penalty=0.1).has_penalties
    assert not SamplingParams(temperature=0, logit_bias={1: 2}).has_penalties


def test_verify_token_ids():
    SamplingParams(logit_bias={9: 1}, stop_token_ids=[0, 9]).verify_token_ids(10)
    with pytest.raises(ValueError, match="logit_bias"):
        SamplingParams(logit_bias={10: 1}).verify_token_ids(10)
    with pytest.raises(ValueError, match="stop_token_ids"):
        SamplingParams(stop_token_ids=[3, 12]).verify_token_ids(10)


def test_stop_token_id_set():
    assert SamplingParams(stop_token_ids=[5]).stop_token_id_set((1, 2)) == {1, 2, 5}
    assert SamplingParams(stop_token_ids=[5], ignore_eos=True).stop_token_id_set((1, 2)) == {5}
    assert SamplingParams().stop_token_id_set(()) == frozenset()
