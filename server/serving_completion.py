"""POST /v1/completions: legacy text completions (benchmarks and the Gateway API Inference Extension use it).

`prompt` is a string, a list of strings, a list of token ids or a list of such lists; choice i of prompt p has
index p * n + i. The text is the raw continuation (no chat template, no output parsing); `echo` prepends the
prompt. Unsupported options are refused with a 400 naming them: `suffix`, `best_of` other than n, and `echo`
with `logprobs` (prompt logprobs are not computed).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from server import sse
from server.context import ServingContext
from server.errors import APIError, bad_request
from server.generation import ChoiceDelta, GenerationRun, until_disconnected
from server.logging import RequestRecord
from server.logprobs import TokenTexts, completion_logprobs
from server.protocol import CompletionRequest
from server.sampling import build_sampling_params, resolve_max_tokens
from server.serving_chat import engine_failure
from tokenizer.tokenizer import Tokenizer


def validate_completion_request(request: CompletionRequest) -> None:
    if request.stream_options is not None and not request.stream:
        raise bad_request("stream_options is only allowed when stream is true", "stream_options")
    if request.suffix is not None:
        raise bad_request("suffix is not supported by this model", "suffix")
    if request.best_of is not None and request.best_of != request.n:
        raise bad_request("best_of must equal n (beam-style best_of is not supported)", "best_of")
    if request.echo and request.logprobs is not None:
        raise bad_request("echo with logprobs is not supported (no prompt logprobs)", "echo")
    prompt = request.prompt
    if isinstance(prompt, str | list) and len(prompt) == 0:
        raise bad_request("prompt must not be empty", "prompt")
    if isinstance(prompt, list) and any(isinstance(p, str | list) and len(p) == 0 for p in prompt):
        raise bad_request("prompt must not contain empty prompts", "prompt")


def num_prompts(prompt: str | list[str] | list[int] | list[list[int]]) -> int:
    if isinstance(prompt, str) or all(isinstance(item, int) for item in prompt):
        return 1
    return len(prompt)


def tokenize_prompts(prompt: str | list[str] | list[int] | list[list[int]], tokenizer: Tokenizer) -> list[list[int]]:
    if isinstance(prompt, str):
        return [tokenizer.encode(prompt)]
    if all(isinstance(item, int) for item in prompt):
        return [list(prompt)]  # type: ignore[arg-type]
    return [tokenizer.encode(item) if isinstance(item, str) else list(item) for item in prompt]  # type: ignore[misc]


class CompletionServing:
    def __init__(self, ctx: ServingContext) -> None:
        self.ctx = ctx
        self.texts = TokenTexts(ctx.tokenizer)

    async def create(self, request: CompletionRequest, http: Request, record: RequestRecord) -> Response:
        ctx = self.ctx
        arrival = time.monotonic()
        ctx.check_model(request.model)
        record.model, record.stream = request.model, request.stream
        validate_completion_request(request)
        ctx.check_admission(request.n * num_prompts(request.prompt))
        prompts = await asyncio.to_thread(tokenize_prompts, request.prompt, ctx.tokenizer)
        vocab = ctx.tokenizer.vocab_size
        for prompt in prompts:
            if any(not 0 <= token < vocab for token in prompt):
                raise bad_request(f"prompt: token ids must be in [0, {vocab})", "prompt")
        longest = max(len(prompt) for prompt in prompts)
        max_tokens = resolve_max_tokens(request.max_tokens, longest, ctx.max_model_len, "max_tokens")
        params = build_sampling_params(request, max_tokens=max_tokens, logprobs=request.logprobs,
                                       defaults=ctx.tokenizer.generation, vocab_size=vocab)
        detokenizers = [ctx.tokenizer.detokenizer(skip_special_tokens=p.skip_special_tokens, stop_strings=p.stop,
                                                  include_stop_str_in_output=p.include_stop_str_in_output,
                                                  hide_stop_tokens=not p.ignore_eos)
                        for _ in prompts for p in params]
        run = GenerationRun(ctx, record, arrival, prompts, params, detokenizers)
        echoes = [ctx.tokenizer.decode(prompt) if request.echo else "" for prompt in prompts]
        response_id = f"cmpl-{record.request_id}"
        if request.stream:
            return StreamingResponse(self._stream(run, request, response_id, echoes), media_type=sse.MEDIA_TYPE,
                                     headers=sse.SSE_HEADERS)
        try:
            disconnected, _ = await until_disconnected(http, run.run_to_end())
            if disconnected:
                return Response(status_code=499)
            body = self._body(run, request, response_id, echoes)
        except Exception as error:  # noqa: BLE001
            run.error = type(error).__name__
            raise (error if isinstance(error, APIError) else engine_failure(error)) from None
        finally:
            run.close()
        return JSONResponse(body)

    def _usage(self, run: GenerationRun) -> dict[str, Any]:
        completion = run.num_completion_tokens
        return {"prompt_tokens": run.num_prompt_tokens, "completion_tokens": completion,
                "total_tokens": run.num_prompt_tokens + completion,
                "prompt_tokens_details": {"cached_tokens": run.num_cached_tokens}}

    def _body(self, run: GenerationRun, request: CompletionRequest, response_id: str,
              echoes: list[str]) -> dict[str, Any]:
        choices = []
        for choice in run.choices:
            echo = echoes[choice.prompt_index]
            logprobs = (completion_logprobs(choice.token_ids, choice.logprobs, self.texts, request.logprobs,
                                            len(echo)) if request.logprobs is not None else None)
            choices.append({"index": choice.index, "text": echo + choice.detokenizer.text, "logprobs": logprobs,
                            "finish_reason": choice.finish_reason, "stop_reason": choice.stop_reason})
        run.record.finish_reason = choices[0]["finish_reason"]
        return {"id": response_id, "object": "text_completion", "created": int(time.time()), "model": request.model,
                "system_fingerprint": None, "choices": choices, "usage": self._usage(run)}

    async def _stream(self, run: GenerationRun, request: CompletionRequest, response_id: str,
                      echoes: list[str]) -> AsyncIterator[bytes]:
        options = request.stream_options
        include_usage = bool(options and options.include_usage)
        continuous = include_usage and bool(options and options.continuous_usage_stats)
        base = {"id": response_id, "object": "text_completion", "created": int(time.time()), "model": request.model,
                "system_fingerprint": None}
        offsets = [0] * len(run.choices)  # NOTE: echo never comes with logprobs (refused), so offsets start at 0

        def chunk(delta: ChoiceDelta, text: str) -> bytes:
            choice = delta.choice
            logprobs = None
            if request.logprobs is not None and delta.logprobs:
                logprobs = completion_logprobs(delta.token_ids, delta.logprobs, self.texts, request.logprobs,
                                               offsets[choice.index])
            offsets[choice.index] += len(text)
            body: dict[str, Any] = {**base, "choices": [{
                "index": choice.index, "text": text, "logprobs": logprobs,
                "finish_reason": choice.finish_reason if delta.finished else None,
                "stop_reason": choice.stop_reason if delta.finished else None}]}
            if include_usage:
                body["usage"] = self._usage(run) if continuous else None
            return sse.event(body)

        try:
            echoed = [False] * len(run.choices)
            async for delta in run.events(self.ctx.args.keep_alive_interval or None):
                if delta is None:
                    yield sse.PING
                    continue
                text = delta.text
                if not echoed[delta.choice.index]:
                    echoed[delta.choice.index] = True
                    text = echoes[delta.choice.prompt_index] + text
                if text or delta.finished or delta.logprobs:
                    yield chunk(delta, text)
            if include_usage:
                yield sse.event({**base, "choices": [], "usage": self._usage(run)})
            run.record.finish_reason = run.choices[0].finish_reason
        except Exception as error:  # noqa: BLE001 - after the 200: report in-stream
            run.error = type(error).__name__
            api_error = error if isinstance(error, APIError) else engine_failure(error)
            run.record.error = api_error.code or api_error.type
            yield sse.error_event(api_error.body())
        finally:
            run.close()
        yield sse.DONE
