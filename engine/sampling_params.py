"""SamplingParams: how one request chooses its tokens (vLLM names, defaults and validation).

The object is immutable and validated once, at construction; every bad value raises `ValueError` naming the field.
Token ids are checked against the vocabulary separately (`verify_token_ids`), because only the engine knows the
vocabulary size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# NOTE: temperatures below this are treated as greedy (as vLLM does): dividing logits by ~0 overflows.
GREEDY_TEMPERATURE_EPS = 1e-5
MAX_LOGPROBS = 20  # OpenAI's limit on `top_logprobs`
LOGIT_BIAS_LIMIT = 100.0  # OpenAI: each bias in [-100, 100]
PENALTY_LIMIT = 2.0  # OpenAI: presence/frequency penalty in [-2, 2]


@dataclass(frozen=True, slots=True)
class SamplingParams:
    n: int = 1  # completions per prompt; the engine fans a request out into n child requests
    temperature: float = 1.0  # 0 (or < 1e-5) means greedy: argmax of the penalised logits
    top_p: float = 1.0  # nucleus: keep the smallest top set whose mass >= top_p; 1 = off; in (0, 1]
    top_k: int = 0  # keep the k most likely tokens; 0 or -1 = off
    min_p: float = 0.0  # drop tokens with prob < min_p * max prob (after temperature); 0 = off; in [0, 1]
    presence_penalty: float = 0.0  # subtracted once from each token present in the output; in [-2, 2]
    frequency_penalty: float = 0.0  # subtracted per occurrence in the output; in [-2, 2]
    repetition_penalty: float = 1.0  # HF/vLLM: tokens seen in prompt+output: logit/r if > 0 else logit*r; > 0
    logit_bias: Mapping[int, float] | None = None  # token id -> bias added to its logit, each in [-100, 100]
    seed: int | None = None  # per-request generator seed: same seed -> same tokens whatever the batch
    stop: str | Sequence[str] | None = None  # stop strings; normalised to tuple[str, ...]
    stop_token_ids: Sequence[int] | None = None  # extra stop tokens besides EOS; normalised to tuple[int, ...]
    ignore_eos: bool = False  # keep generating past EOS (EOS is then neither a stop nor masked by min_tokens)
    max_tokens: int | None = None  # generated-token budget; None = up to the context length
    min_tokens: int = 0  # stop tokens (EOS + stop_token_ids) are masked until this many tokens are generated
    logprobs: int | None = None  # None = no logprobs; k in 0..20 = sampled token's logprob + top-k alternatives
    skip_special_tokens: bool = True  # detokenizer drops special tokens from the text
    include_stop_str_in_output: bool = False  # keep the matched stop string at the end of the text

    def __post_init__(self) -> None:
        _check_int("n", self.n, low=1)
        _check_float("temperature", self.temperature, low=0.0)
        _check_float("top_p", self.top_p, low=0.0, low_open=True, high=1.0)
        _check_int("top_k", self.top_k, low=-1)
        _check_float("min_p", self.min_p, low=0.0, high=1.0)
        _check_float("presence_penalty", self.presence_penalty, low=-PENALTY_LIMIT, high=PENALTY_LIMIT)
        _check_float("frequency_penalty", self.frequency_penalty, low=-PENALTY_LIMIT, high=PENALTY_LIMIT)
        _check_float("repetition_penalty", self.repetition_penalty, low=0.0, low_open=True)
        if self.seed is not None:
            _check_int("seed", self.seed, low=-(2**63), high=2**64 - 1)
        _check_bool("ignore_eos", self.ignore_eos)
        _check_bool("skip_special_tokens", self.skip_special_tokens)
        _check_bool("include_stop_str_in_output", self.include_stop_str_in_output)
        if self.max_tokens is not None:
            _check_int("max_tokens", self.max_tokens, low=1)
        _check_int("min_tokens", self.min_tokens, low=0)
        if self.max_tokens is not None and self.min_tokens > self.max_tokens:
            raise ValueError(f"min_tokens ({self.min_tokens}) must be <= max_tokens ({self.max_tokens})")
        if self.logprobs is not None:
            _check_int("logprobs", self.logprobs, low=0, high=MAX_LOGPROBS)
        object.__setattr__(self, "logit_bias", _normalise_logit_bias(self.logit_bias))
        object.__setattr__(self, "stop", _normalise_stop(self.stop))
        object.__setattr__(self, "stop_token_ids", _normalise_token_ids("stop_token_ids", self.stop_token_ids))
        if self.is_greedy:
            # NOTE: as vLLM, truncation knobs are meaningless for argmax; reset them so that the sampler's
            # "any row needs top-k/top-p/min-p" fast-path flags are not set by greedy rows.
            object.__setattr__(self, "top_p", 1.0)
            object.__setattr__(self, "top_k", 0)
            object.__setattr__(self, "min_p", 0.0)

    @property
    def is_greedy(self) -> bool:
        """True when the request takes the argmax of its (biased, penalised) logits: temperature == 0."""
        return self.temperature < GREEDY_TEMPERATURE_EPS

    @property
    def has_penalties(self) -> bool:
        """True when the sampler must count prompt/output tokens for this request."""
        return self.repetition_penalty != 1.0 or self.presence_penalty != 0.0 or self.frequency_penalty != 0.0

    def verify_token_ids(self, vocab_size: int) -> None:
        """Raise ValueError naming the field if `logit_bias` or `stop_token_ids` holds an id outside the vocab."""
        for name, ids in (("logit_bias", tuple(self.logit_bias or ())), ("stop_token_ids", self.stop_token_ids)):
            bad = [t for t in ids if not 0 <= t < vocab_size]
            if bad:
                raise ValueError(f"{name}: token ids {bad[:8]} out of range for vocab_size {vocab_size}")

    def stop_token_id_set(self, eos_token_ids: Sequence[int]) -> frozenset[int]:
        """The ids that end generation: EOS (unless ignore_eos) plus stop_token_ids. min_tokens masks these."""
        eos = () if self.ignore_eos else tuple(eos_token_ids)
        return frozenset(eos) | frozenset(self.stop_token_ids)  # type: ignore[arg-type]


def _check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be a bool, got {value!r}")


def _check_int(name: str, value: object, low: int | None = None, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")


def _check_float(
    name: str, value: object, low: float | None = None, high: float | None = None, low_open: bool = False
) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if value != value:  # NaN
        raise ValueError(f"{name} must not be NaN")
    too_low = low is not None and (value <= low if low_open else value < low)
    if too_low or (high is not None and value > high):
        bracket = "(" if low_open else "["
        raise ValueError(f"{name} must be in {bracket}{low}, {high}], got {value}")


def _normalise_logit_bias(bias: Mapping[Any, Any] | None) -> dict[int, float] | None:
    if bias is None:
        return None
    if not isinstance(bias, Mapping):
        raise ValueError(f"logit_bias must be a mapping of token id to bias, got {type(bias).__name__}")
    out: dict[int, float] = {}
    for key, value in bias.items():
        try:  # NOTE: OpenAI clients send JSON object keys, i.e. strings such as "1234"
            token_id = int(key)
        except (TypeError, ValueError):
            raise ValueError(f"logit_bias: key {key!r} is not a token id") from None
        if isinstance(key, bool) or token_id < 0:
            raise ValueError(f"logit_bias: key {key!r} is not a token id")
        _check_float(f"logit_bias[{key!r}]", value, low=-LOGIT_BIAS_LIMIT, high=LOGIT_BIAS_LIMIT)
        out[token_id] = float(value)
    return out or None


def _normalise_stop(stop: str | Sequence[str] | None) -> tuple[str, ...]:
    if stop is None:
        return ()
    items = (stop,) if isinstance(stop, str) else stop
    if not isinstance(items, Sequence) or not all(isinstance(s, str) for s in items):
        raise ValueError(f"stop must be a string or a list of strings, got {stop!r}")
    if any(s == "" for s in items):
        raise ValueError("stop must not contain an empty string")
    return tuple(items)


def _normalise_token_ids(name: str, ids: Sequence[int] | None) -> tuple[int, ...]:
    if ids is None:
        return ()
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence):
        raise ValueError(f"{name} must be a list of token ids, got {ids!r}")
    for t in ids:
        if isinstance(t, bool) or not isinstance(t, int) or t < 0:
            raise ValueError(f"{name} must hold non-negative ints, got {t!r}")
    return tuple(ids)
