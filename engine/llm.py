"""LLM: the offline API, as vLLM's. `LLM(model=PATH).generate(prompts, SamplingParams(...))`.

This is the layer above the engine core: it tokenizes text prompts, fans `n > 1` out into child requests, drives
the core's loop, detokenizes incrementally, applies stop strings (finishing the request in the core when one
matches) and assembles one `RequestOutput` per prompt, in prompt order.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from engine.config import ModelConfig, resolve_dtype
from engine.engine_config import (
    CacheConfig,
    EngineConfig,
    ParallelConfig,
    SchedulerConfig,
    DEFAULT_SPECULATIVE_DISABLE_BY_BATCH_SIZE,
    SpeculativeConfig,
    default_async_scheduling,
    resolve_max_model_len,
)
from engine.engine_core import EngineCore, EngineCoreOutput
from engine.model_path import resolve_model_path
from engine.outputs import CompletionOutput, RequestOutput
from engine.request import RequestStatus
from engine.sampling_params import SamplingParams

logger = logging.getLogger(__name__)

PromptType = str | Mapping[str, Any]  # text, or {"prompt_token_ids": [...]} (optionally with "prompt": text)


def default_model_path() -> Path:
    """The model `LLM()` and `glm-serve` serve when none is named: the embedded glm-4.5-tiny checkpoint."""
    from engine.embedded_model import default_model_path as embedded

    return embedded()


def load_tokenizer(path: Path):
    """The model directory's tokenizer, or None when it has no tokenizer files (token-id prompts only)."""
    if not (path / "tokenizer.json").is_file():
        return None
    from tokenizer.tokenizer import Tokenizer  # NOTE: lazy, the engine core never needs it

    return Tokenizer.from_model_dir(path)


class LLM:
    def __init__(
        self,
        model: str | Path | None = None,
        *,
        dtype: str | torch.dtype = "auto",
        device: str | torch.device | None = None,
        max_model_len: int | None = None,
        max_num_seqs: int = 256,
        max_num_batched_tokens: int = 8192,
        enable_chunked_prefill: bool = True,
        enable_prefix_caching: bool = True,
        block_size: int = 16,
        kv_cache_memory: int | None = None,
        gpu_memory_utilization: float = 0.9,
        num_blocks_override: int | None = None,
        async_scheduling: bool | None = None,
        num_speculative_tokens: int = 0,
        speculative_disable_by_batch_size: int | None = DEFAULT_SPECULATIVE_DISABLE_BY_BATCH_SIZE,
        tensor_parallel_size: int = 1,
        enable_expert_parallel: bool = False,
        seed: int = 0,
        attention_backend: str = "auto",
        enforce_eager: bool = False,
        tokenizer: str | Path | None = None,
        skip_tokenizer_init: bool = False,
    ) -> None:
        model_dir = resolve_model_path(model) if model is not None else default_model_path()
        model_config = ModelConfig.from_pretrained(model_dir)
        device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
        from engine.loader import default_dtype  # NOTE: keeps `import engine` light

        resolved_dtype = default_dtype(model_config, device) if dtype in (None, "auto") else resolve_dtype(dtype)
        self.config = EngineConfig(
            model=str(model_dir),
            model_config=model_config,
            dtype=resolved_dtype,
            device=device,
            cache=CacheConfig(block_size=block_size, kv_cache_memory=kv_cache_memory,
                              gpu_memory_utilization=gpu_memory_utilization,
                              enable_prefix_caching=enable_prefix_caching, num_blocks_override=num_blocks_override),
            scheduler=SchedulerConfig(
                max_model_len=resolve_max_model_len(model_config, max_model_len),
                max_num_seqs=max_num_seqs,
                max_num_batched_tokens=max_num_batched_tokens,
                enable_chunked_prefill=enable_chunked_prefill,
                async_scheduling=default_async_scheduling(device) if async_scheduling is None else async_scheduling,
            ),
            seed=seed,
            speculative=SpeculativeConfig(num_speculative_tokens=num_speculative_tokens,
                                          disable_by_batch_size=speculative_disable_by_batch_size),
            parallel=ParallelConfig(tensor_parallel_size=tensor_parallel_size,
                                    enable_expert_parallel=enable_expert_parallel),
            attention_backend=attention_backend,
            enforce_eager=enforce_eager,
        )
        self.tokenizer = None if skip_tokenizer_init else load_tokenizer(Path(tokenizer) if tokenizer else model_dir)
        # The tokenizer's stop ids complete generation_config's EOS list (GLM's <|user|>, <|observation|>).
        extra_eos = self.tokenizer.stop_token_ids if self.tokenizer is not None else ()
        self.engine = EngineCore.from_config(self.config, extra_eos_token_ids=extra_eos)
        self._next_request = 0

    def get_tokenizer(self):
        return self.tokenizer

    def shutdown(self) -> None:
        """Stop the tensor-parallel worker processes (also done at interpreter exit); the LLM is unusable after."""
        self.engine.shutdown()

    def generate(
        self,
        prompts: PromptType | Sequence[PromptType],
        sampling_params: SamplingParams | Sequence[SamplingParams] | None = None,
        use_tqdm: bool = True,
    ) -> list[RequestOutput]:
        """Generate for every prompt; returns one RequestOutput per prompt, in order, each with n completions."""
        if isinstance(prompts, (str, Mapping)):
            prompts = [prompts]
        params_list = self._params_per_prompt(prompts, sampling_params)
        parsed = [self._parse_prompt(i, p) for i, p in enumerate(prompts)]
        results: list[RequestOutput] = []
        children: dict[str, tuple[int, TextAssembler]] = {}  # child request id -> (prompt index, assembler)
        try:
            for index, ((text, token_ids), params) in enumerate(zip(parsed, params_list)):
                results.append(RequestOutput(str(self._next_request), text, token_ids))
                self._add_children(index, token_ids, params, results[-1], children)
            self._run(results, children, use_tqdm)
        except BaseException:
            self.engine.abort_request(list(children))
            raise
        return results

    # ---- helpers --------------------------------------------------------------------------------------------

    def _params_per_prompt(self, prompts: Sequence[PromptType], sampling_params) -> list[SamplingParams]:
        if sampling_params is None:
            sampling_params = SamplingParams()
        if isinstance(sampling_params, SamplingParams):
            return [sampling_params] * len(prompts)
        params = list(sampling_params)
        if len(params) != len(prompts):
            raise ValueError(f"sampling_params: got {len(params)} for {len(prompts)} prompts")
        return params

    def _parse_prompt(self, index: int, prompt: PromptType) -> tuple[str | None, list[int]]:
        if isinstance(prompt, str):
            if self.tokenizer is None:
                raise ValueError(f"prompts[{index}]: text prompts need a tokenizer; pass "
                                 "{'prompt_token_ids': [...]} or a model directory with tokenizer files")
            return prompt, list(self.tokenizer.encode(prompt))
        if isinstance(prompt, Mapping) and "prompt_token_ids" in prompt:
            ids = prompt["prompt_token_ids"]
            if isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence) or not ids:
                raise ValueError(f"prompts[{index}].prompt_token_ids must be a non-empty list of token ids")
            return prompt.get("prompt"), list(ids)
        raise ValueError(f"prompts[{index}]: expected a string or {{'prompt_token_ids': [...]}}, got {prompt!r}")

    def _add_children(self, index: int, token_ids: list[int], params: SamplingParams, result: RequestOutput,
                      children: dict[str, tuple[int, TextAssembler]]) -> None:
        request_id = str(self._next_request)
        self._next_request += 1
        if params.stop and self.tokenizer is None:
            raise ValueError("stop: stop strings need a tokenizer (this LLM has none)")
        for j in range(params.n):
            # NOTE: as vLLM, child j of a seeded request uses seed + j, so the n completions differ.
            child = replace(params, n=1, seed=None if params.seed is None else params.seed + j)
            child_id = f"{request_id}-{j}" if params.n > 1 else request_id
            completion = CompletionOutput(j, "", [], 0.0 if params.logprobs is not None else None,
                                          [] if params.logprobs is not None else None)
            result.outputs.append(completion)
            self.engine.add_request(child_id, token_ids, child)
            children[child_id] = (index, TextAssembler(self.tokenizer, child, completion))

    def _run(self, results: list[RequestOutput], children: dict[str, tuple[int, TextAssembler]],
             use_tqdm: bool) -> None:
        pending = {i: len(r.outputs) for i, r in enumerate(results)}
        bar = _progress_bar(len(results), use_tqdm)
        while self.engine.has_unfinished_requests():
            for out in self.engine.step_fn():
                entry = children.get(out.request_id)
                if entry is None:
                    continue
                index, assembler = entry
                if self._absorb(out, assembler, results[index]):
                    del children[out.request_id]
                    pending[index] -= 1
                    if pending[index] == 0:
                        results[index].finished = True
                        if bar is not None:
                            bar.update(1)
        if bar is not None:
            bar.close()

    def _absorb(self, out: EngineCoreOutput, assembler: TextAssembler, result: RequestOutput) -> bool:
        """Fold one step's output into its completion; True when the completion is finished."""
        stop_string = assembler.add(out)
        if out.num_cached_tokens and assembler.completion.index == 0:
            result.num_cached_tokens = out.num_cached_tokens
        if stop_string is not None and not out.finished:
            self.engine.finish_requests(out.request_id, RequestStatus.FINISHED_STOPPED)
        return out.finished or stop_string is not None


def _progress_bar(total: int, use_tqdm: bool):
    if not use_tqdm or total < 2:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="Processed prompts", dynamic_ncols=True)


class TextAssembler:
    """One completion's growing output: token ids, logprobs, and the incremental text with stop strings."""

    def __init__(self, tokenizer, params: SamplingParams, completion: CompletionOutput) -> None:
        self.completion = completion
        self._detokenizer = None
        if tokenizer is not None:
            self._detokenizer = tokenizer.detokenizer(
                skip_special_tokens=params.skip_special_tokens,
                stop_strings=params.stop,
                include_stop_str_in_output=params.include_stop_str_in_output,
                hide_stop_tokens=not params.ignore_eos,
            )

    def add(self, out: EngineCoreOutput) -> str | None:
        """Append one step's tokens; returns the stop string that ended the text, if one did."""
        c = self.completion
        token_ids, matched = out.new_token_ids, None
        if self._detokenizer is not None:  # NOTE: tokens after a stop string completed mid-step are dropped
            num_kept, step = self._detokenizer.push_until_stop(token_ids)
            token_ids, matched = token_ids[:num_kept], step.stop_string
            c.text += step.text
        c.token_ids.extend(token_ids)
        if out.new_logprobs is not None and c.logprobs is not None:
            for token_id, lp in zip(token_ids, out.new_logprobs):
                c.logprobs.append(lp.as_dict(token_id))
                c.cumulative_logprob = (c.cumulative_logprob or 0.0) + lp.logprob
        if self._detokenizer is not None and matched is None and out.finished:
            tail = self._detokenizer.finish()
            c.text += tail.text
            matched = tail.stop_string
        if matched is not None:
            c.finish_reason, c.stop_reason = "stop", matched
        elif out.finished:
            c.finish_reason, c.stop_reason = out.finish_reason, out.stop_reason
        return matched
