"""POST /v1/chat/completions: non-streaming bodies and SSE streams by the contract (sections 3-5).

Everything that can fail is checked before the first byte (model, fields, tools, prompt length, admission); an
error after the 200 goes out as one in-stream error event followed by `[DONE]`. Each choice has its own streaming
`OutputParser` (exact tool-call mode by default, incremental with `--tool-call-streaming incremental`); the
non-streaming body parses the whole text with the same parser, so both paths give the same calls.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from server import sse
from server.async_engine import EngineDeadError, RequestAbortedError, RequestFailedError
from server.chat_prompt import ChatPrompt, build_chat_prompt, validate_chat_request
from server.context import ServingContext
from server.errors import APIError, bad_request, internal_error, overloaded
from server.generation import ChoiceDelta, GenerationRun, until_disconnected
from server.logging import RequestRecord
from server.logprobs import TokenTexts, chat_logprobs
from server.protocol import ChatCompletionRequest
from server.sampling import build_sampling_params, resolve_max_tokens
from tokenizer.output_parser import OutputParser


def engine_failure(error: BaseException) -> APIError:
    """An engine-side failure as the API error the client sees."""
    if isinstance(error, RequestAbortedError):
        return overloaded(f"The request was aborted: {error}")
    if isinstance(error, ValueError):
        return bad_request(str(error))
    if isinstance(error, EngineDeadError):
        return internal_error("The engine stopped while serving this request.")
    if isinstance(error, RequestFailedError):
        return internal_error(f"The engine failed while processing this request: {error}")
    return internal_error(f"Internal server error: {type(error).__name__}")


class ChatServing:
    def __init__(self, ctx: ServingContext) -> None:
        self.ctx = ctx
        self.texts = TokenTexts(ctx.tokenizer)
        self.reasoning_key = ctx.args.reasoning_field
        self.incremental = ctx.args.tool_call_streaming == "incremental"

    async def create(self, request: ChatCompletionRequest, raw: Mapping[str, Any], http: Request,
                     record: RequestRecord) -> Response:
        ctx = self.ctx
        arrival = time.monotonic()
        ctx.check_model(request.model)
        record.model, record.stream = request.model, request.stream
        validate_chat_request(request, ctx.args.allow_custom_chat_template)
        ctx.check_admission(request.n)  # cheap refusal before tokenisation
        prompt = await asyncio.to_thread(build_chat_prompt, request, raw, ctx.tokenizer,
                                         ctx.args.default_chat_template_kwargs)
        cap = request.max_completion_tokens if request.max_completion_tokens is not None else request.max_tokens
        param = "max_completion_tokens" if request.max_completion_tokens is not None else "max_tokens"
        max_tokens = resolve_max_tokens(cap, len(prompt.token_ids), ctx.max_model_len, param)
        logprobs = (request.top_logprobs or 0) if request.logprobs else None
        params = build_sampling_params(request, max_tokens=max_tokens, logprobs=logprobs,
                                       defaults=ctx.tokenizer.generation, vocab_size=ctx.tokenizer.vocab_size)
        # NOTE: skip_special_tokens (default true, as vLLM) never drops the parser's tags, even in a checkpoint
        # that marks them special; GLM-4.5's are not special anyway.
        detokenizers = [ctx.tokenizer.detokenizer(skip_special_tokens=p.skip_special_tokens, stop_strings=p.stop,
                                                  include_stop_str_in_output=p.include_stop_str_in_output,
                                                  hide_stop_tokens=not p.ignore_eos,
                                                  keep_token_ids=ctx.tokenizer.glm.parser_tag_ids)
                        for p in params]
        run = GenerationRun(ctx, record, arrival, [prompt.token_ids], params, detokenizers)
        response_id = f"chatcmpl-{record.request_id}"
        if request.stream:
            stream = self._stream(run, request, prompt, response_id)
            return StreamingResponse(stream, media_type=sse.MEDIA_TYPE, headers=sse.SSE_HEADERS)
        try:
            disconnected, _ = await until_disconnected(http, run.run_to_end())
            if disconnected:
                return Response(status_code=499)
            body = self._body(run, request, prompt, response_id)
        except Exception as error:  # noqa: BLE001 - engine failures become API errors
            run.error = type(error).__name__
            raise engine_failure(error) if not isinstance(error, APIError) else error from None
        finally:
            run.close()
        return JSONResponse(body)

    # ---- non-streaming --------------------------------------------------------------------------------------

    def _parser(self, request: ChatCompletionRequest, prompt: ChatPrompt) -> OutputParser:
        return OutputParser(prompt.tools, thinking=prompt.parse_reasoning, incremental=self.incremental,
                            parallel_tool_calls=request.parallel_tool_calls, prefill=prompt.prefill)

    def _body(self, run: GenerationRun, request: ChatCompletionRequest, prompt: ChatPrompt,
              response_id: str) -> dict[str, Any]:
        choices = []
        for choice in run.choices:
            parser = self._parser(request, prompt)
            parser.feed(choice.detokenizer.text)
            parser.finish()
            parsed = parser.result()
            message: dict[str, Any] = {"role": "assistant", "content": parsed.content}
            if request.include_reasoning:
                message[self.reasoning_key] = parsed.reasoning_content
            if parsed.tool_calls:
                message["tool_calls"] = [
                    {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
                    for call in parsed.tool_calls]
            logprobs = (chat_logprobs(choice.token_ids, choice.logprobs, self.texts, request.top_logprobs or 0)
                        if request.logprobs else None)
            finish = "tool_calls" if parsed.tool_calls else choice.finish_reason
            choices.append({"index": choice.index, "message": message, "logprobs": logprobs,
                            "finish_reason": finish, "stop_reason": choice.stop_reason})
        run.record.finish_reason = choices[0]["finish_reason"]
        return {"id": response_id, "object": "chat.completion", "created": int(time.time()),
                "model": request.model, "system_fingerprint": None, "choices": choices,
                "usage": self._usage(run, prompt)}

    def _usage(self, run: GenerationRun, prompt: ChatPrompt) -> dict[str, Any]:
        tokenizer = self.ctx.tokenizer
        reasoning = sum(tokenizer.count_reasoning_tokens(choice.token_ids, prompt.thinking)
                        for choice in run.choices)
        run.record.reasoning_tokens = reasoning
        completion = run.num_completion_tokens
        return {"prompt_tokens": run.num_prompt_tokens, "completion_tokens": completion,
                "total_tokens": run.num_prompt_tokens + completion,
                "completion_tokens_details": {"reasoning_tokens": reasoning},
                "prompt_tokens_details": {"cached_tokens": run.num_cached_tokens}}

    # ---- streaming ------------------------------------------------------------------------------------------

    async def _stream(self, run: GenerationRun, request: ChatCompletionRequest, prompt: ChatPrompt,
                      response_id: str) -> AsyncIterator[bytes]:
        options = request.stream_options
        include_usage = bool(options and options.include_usage)
        continuous = include_usage and bool(options and options.continuous_usage_stats)
        base = {"id": response_id, "object": "chat.completion.chunk", "created": int(time.time()),
                "model": request.model, "system_fingerprint": None}
        parsers = [self._parser(request, prompt) for _ in run.choices]

        def chunk(index: int, delta: dict[str, Any], finish: str | None = None,
                  logprobs: dict[str, Any] | None = None) -> bytes:
            body: dict[str, Any] = {**base, "choices": [{"index": index, "delta": delta, "logprobs": logprobs,
                                                         "finish_reason": finish}]}
            if include_usage:
                body["usage"] = self._usage(run, prompt) if continuous else None
            return sse.event(body)

        try:
            for choice in run.choices:  # role only in the first delta of each choice
                yield chunk(choice.index, {"role": "assistant", "content": "", self.reasoning_key: None})
            async for delta in run.events(self.ctx.args.keep_alive_interval or None):
                if delta is None:
                    yield sse.PING
                    continue
                for piece in self._deltas(delta, parsers[delta.choice.index], request, chunk):
                    yield piece
            if include_usage:
                yield sse.event({**base, "choices": [], "usage": self._usage(run, prompt)})
            run.record.finish_reason = "tool_calls" if parsers[0].sent_tool_calls else run.choices[0].finish_reason
        except Exception as error:  # noqa: BLE001 - after the 200: report in-stream
            run.error = type(error).__name__
            api_error = error if isinstance(error, APIError) else engine_failure(error)
            run.record.error = api_error.code or api_error.type
            yield sse.error_event(api_error.body())
        finally:
            run.close()
        yield sse.DONE

    def _deltas(self, delta: ChoiceDelta, parser: OutputParser, request: ChatCompletionRequest,
                chunk: Any) -> list[bytes]:
        choice = delta.choice
        pieces = parser.feed(delta.text) if delta.text else []
        if delta.finished:
            pieces += parser.finish()
        logprobs = (chat_logprobs(delta.token_ids, delta.logprobs or (), self.texts, request.top_logprobs or 0)
                    if request.logprobs and delta.logprobs else None)
        out = []
        for piece in pieces:
            if "reasoning_content" in piece:
                if not request.include_reasoning:
                    continue
                piece = {self.reasoning_key: piece["reasoning_content"]}
            else:
                piece = {**piece, self.reasoning_key: None}
            out.append(chunk(choice.index, piece, logprobs=logprobs))
            logprobs = None  # the step's logprobs ride on its first chunk
        if logprobs is not None:
            out.append(chunk(choice.index, {}, logprobs=logprobs))
        if delta.finished:
            finish = "tool_calls" if parser.sent_tool_calls else choice.finish_reason
            out.append(chunk(choice.index, {}, finish=finish))
        return out
