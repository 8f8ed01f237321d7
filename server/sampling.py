"""Request fields -> `SamplingParams` (one per completion), the output cap and the context-length check.

- cap: `max_completion_tokens` wins over `max_tokens`; neither set: `max_model_len - prompt_tokens`. A prompt that
  leaves no room, or an explicit cap beyond the context, is 400 `context_length_exceeded` (contract wording).
- `temperature`/`top_p`/`top_k` absent: the model's generation_config.json, then the neutral values.
- n > 1 is fanned out by the server (the engine core takes one completion per request); with a `seed`, child i
  gets `seed + i` (wrapped to the uint64 range) so the completions differ yet stay reproducible.
- `SamplingParams` validates again; its ValueError (which names the field first) becomes a 400 with `param`.
"""

from __future__ import annotations

import re
from typing import Any

from engine.sampling_params import SamplingParams
from server.errors import APIError, bad_request, context_length_exceeded
from server.protocol import SamplingFields
from tokenizer.generation_config import GenerationDefaults

_UINT64 = 2**64
_FIELD = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)")


def resolve_max_tokens(requested: int | None, num_prompt_tokens: int, max_model_len: int, param: str) -> int:
    """The output cap; raises the contract's context_length_exceeded error when it cannot fit."""
    room = max_model_len - num_prompt_tokens
    if requested is None:
        if room < 1:
            raise context_length_exceeded(max_model_len, num_prompt_tokens, 0, "messages")
        return room
    if requested > room:
        raise context_length_exceeded(max_model_len, num_prompt_tokens, requested, param)
    return requested


def build_sampling_params(
    request: SamplingFields,
    *,
    max_tokens: int,
    logprobs: int | None,
    defaults: GenerationDefaults,
    vocab_size: int,
    skip_special_tokens: bool | None = None,
) -> list[SamplingParams]:
    """One SamplingParams per completion (n of them)."""
    base: dict[str, Any] = dict(
        n=1,
        temperature=_first(request.temperature, defaults.temperature, 1.0),
        top_p=_first(request.top_p, defaults.top_p, 1.0),
        top_k=_first(request.top_k, defaults.top_k, 0),
        min_p=_first(request.min_p, 0.0),
        presence_penalty=request.presence_penalty,
        frequency_penalty=request.frequency_penalty,
        repetition_penalty=_first(request.repetition_penalty, 1.0),
        logit_bias=request.logit_bias,
        stop=request.stop,
        stop_token_ids=request.stop_token_ids,
        ignore_eos=request.ignore_eos,
        max_tokens=max_tokens,
        min_tokens=request.min_tokens,
        logprobs=logprobs,
        skip_special_tokens=request.skip_special_tokens if skip_special_tokens is None else skip_special_tokens,
        include_stop_str_in_output=request.include_stop_str_in_output,
    )
    params = []
    for index in range(request.n):
        seed = None if request.seed is None else _wrap_seed(request.seed + index)
        try:
            sampling = SamplingParams(**base, seed=seed)
            sampling.verify_token_ids(vocab_size)
        except ValueError as error:
            raise _named(error) from None
        params.append(sampling)
    return params


def _first(*values: Any) -> Any:
    return next(value for value in values if value is not None)


def _wrap_seed(seed: int) -> int:
    return seed - _UINT64 if seed >= _UINT64 else seed


def _named(error: ValueError) -> APIError:
    message = str(error)
    match = _FIELD.match(message)
    return bad_request(message, param=match.group(1) if match else None)
