"""TEST-ONLY: an engine core that replays scripted completions instead of running a model.

Selected by the environment variable `GLM_SERVE_TEST_SCRIPT` (a JSON file), which only tests set; production
never does. A random tiny model writes gibberish, so the HTTP paths that depend on what the model says (tool
calls streamed vs whole, reasoning split, finish_reason `tool_calls`) are tested with this core, which honours
the engine core's interface (add/abort/finish/step, scheduler stats, max_tokens, min_tokens, stop ids, logprobs
shapes) and simulates KV blocks so usage gauges move.

Script keys (all optional):
- `replies`: `[{"when": "substring of the decoded prompt", "text": "...", "stop_token": "<|user|>"}]`; the first
  entry whose `when` occurs in the prompt (or has no `when`) is replayed, then its stop token (default
  `<|endoftext|>`; null: none, the request runs to max_tokens repeating the text);
- `tokens_per_step` (1): tokens per request per step (> 1 imitates speculative decoding's multi-token steps);
- `load_delay_s` (0): sleep while "loading" (the engine thread's start-up);
- `step_delay_s` (0): sleep per step (keeps requests in flight for disconnect tests);
- `num_blocks` (256) and `block_size` (16): the simulated KV pool;
- `fail_at_step` / `hang_at_step`: raise / block forever at that step (fault injection: engine death, stale
  heartbeat);
- `fail_request_when`: a substring of the decoded prompt; such a request fails alone once it has two output
  tokens (its step raises `RequestFailedError` naming it: fault injection of a per-request failure);
- `prompt_log`: a file that receives one JSON line per request, `{"request_id", "prompt"}` (decoded prompt).
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.outputs import EngineCoreOutput, SampledLogprobs, ScheduledRequest, SchedulerOutput
from engine.request import FINISH_REASONS, RequestStatus
from engine.sampling_params import SamplingParams
from server.async_engine import RequestFailedError
from tokenizer.tokenizer import Tokenizer


@dataclass(slots=True)
class _ScriptedRequest:
    request_id: str
    prompt_token_ids: tuple[int, ...]
    params: SamplingParams
    reply: list[int]  # the scripted ids, stop token included when there is one
    max_tokens: int
    stop_ids: frozenset[int]
    fails: bool = False  # matches `fail_request_when`
    output: list[int] = field(default_factory=list)


class _Pool:
    def __init__(self, num_blocks: int, block_size: int) -> None:
        self.num_blocks, self.block_size = num_blocks, block_size
        self.used: dict[str, int] = {}

    @property
    def usage(self) -> float:
        return min(1.0, sum(self.used.values()) / self.num_blocks)

    def hold(self, request_id: str, num_tokens: int) -> None:
        self.used[request_id] = math.ceil(num_tokens / self.block_size)


class _ScriptedScheduler:
    """Quacks like engine.scheduler.Scheduler for AsyncEngine's stats (running, waiting, kv.usage, schedule)."""

    def __init__(self, pool: _Pool) -> None:
        self.kv = pool
        self.running: list[_ScriptedRequest] = []
        self.waiting: list[_ScriptedRequest] = []
        self.num_preemptions = 0
        self._step_id = 0

    def schedule(self) -> SchedulerOutput:
        self.running.extend(self.waiting)
        self.waiting.clear()
        self._step_id += 1
        scheduled = tuple(
            ScheduledRequest(request_id=r.request_id, token_ids=(), num_computed_tokens=0,
                             num_scheduled_tokens=len(r.prompt_token_ids) if not r.output else 1, block_ids=(),
                             is_sampled=True, prompt_token_ids=r.prompt_token_ids, sampling_params=r.params,
                             stop_token_ids=r.stop_ids)
            for r in self.running)
        return SchedulerOutput(step_id=self._step_id, scheduled=scheduled,
                               num_scheduled_tokens=sum(s.num_scheduled_tokens for s in scheduled),
                               preempted_req_ids=(), finished_req_ids=())


class ScriptedEngineCore:
    def __init__(self, script: dict[str, Any], tokenizer: Tokenizer, max_model_len: int) -> None:
        self.tokenizer = tokenizer
        self.max_model_len = max_model_len
        self.vocab_size = tokenizer.vocab_size
        self.replies = list(script.get("replies", [{"text": "Hello."}]))
        self.tokens_per_step = int(script.get("tokens_per_step", 1))
        self.step_delay_s = float(script.get("step_delay_s", 0.0))
        self.fail_at_step = script.get("fail_at_step")
        self.hang_at_step = script.get("hang_at_step")
        self.fail_request_when: str | None = script.get("fail_request_when")
        self.prompt_log = Path(script["prompt_log"]) if script.get("prompt_log") else None
        self.scheduler = _ScriptedScheduler(_Pool(int(script.get("num_blocks", 256)),
                                                  int(script.get("block_size", 16))))
        self.requests: dict[str, _ScriptedRequest] = {}
        self.num_steps = 0
        self.step_fn = self.step

    @classmethod
    def from_script(cls, script_path: Path, model_dir: Path, max_model_len: int) -> ScriptedEngineCore:
        script = json.loads(script_path.read_text(encoding="utf-8"))
        time.sleep(float(script.get("load_delay_s", 0.0)))  # imitates a model load (/health 503 meanwhile)
        return cls(script, Tokenizer.from_model_dir(model_dir), max_model_len)

    def add_request(self, request_id: str, prompt_token_ids: Sequence[int], sampling_params: SamplingParams) -> None:
        prompt = tuple(prompt_token_ids)
        if not prompt or any(not 0 <= t < self.vocab_size for t in prompt):
            raise ValueError("prompt_token_ids: empty, or a token id out of range")
        if len(prompt) >= self.max_model_len:
            raise ValueError(f"prompt_token_ids: the prompt has {len(prompt)} tokens, which leaves no room")
        if request_id in self.requests:
            raise ValueError(f"request_id {request_id!r} is already in use")
        text = self.tokenizer.decode(prompt, skip_special_tokens=False)
        if self.prompt_log is not None:
            with self.prompt_log.open("a", encoding="utf-8") as log:
                log.write(json.dumps({"request_id": request_id, "prompt": text}) + "\n")
        reply = self._reply_for(text)
        room = self.max_model_len - len(prompt)
        max_tokens = room if sampling_params.max_tokens is None else min(sampling_params.max_tokens, room)
        stop_ids = sampling_params.stop_token_id_set(self.tokenizer.stop_token_ids)
        fails = self.fail_request_when is not None and self.fail_request_when in text
        request = _ScriptedRequest(request_id, prompt, sampling_params, reply, max_tokens, stop_ids, fails)
        self.requests[request_id] = request
        self.scheduler.waiting.append(request)

    def _reply_for(self, prompt_text: str) -> list[int]:
        for entry in self.replies:
            if entry.get("when") is None or entry["when"] in prompt_text:
                ids = self.tokenizer.encode(entry.get("text", ""))
                stop = entry.get("stop_token", "<|endoftext|>")
                if stop is not None:
                    ids.append(self.tokenizer.token_to_id(stop))
                return ids
        raise ValueError("the test script has no reply for this prompt")

    def abort_request(self, request_ids: str | Iterable[str]) -> None:
        self.finish_requests(request_ids, RequestStatus.FINISHED_ABORTED)

    def finish_requests(self, request_ids: str | Iterable[str], status: RequestStatus) -> list[Any]:
        ids = (request_ids,) if isinstance(request_ids, str) else tuple(request_ids)
        return [request for request_id in ids if (request := self._release(request_id)) is not None]

    def has_unfinished_requests(self) -> bool:
        return bool(self.requests)

    def step(self) -> list[EngineCoreOutput]:
        self.num_steps += 1
        if self.fail_at_step is not None and self.num_steps >= self.fail_at_step:
            raise RuntimeError(f"scripted engine failure at step {self.num_steps}")
        if self.hang_at_step is not None and self.num_steps >= self.hang_at_step:
            threading.Event().wait()  # blocks forever: the heartbeat goes stale
        if self.step_delay_s:
            time.sleep(self.step_delay_s)
        self.scheduler.schedule()
        failing = [r.request_id for r in self.scheduler.running if r.fails and len(r.output) >= 2]
        if failing:
            raise RequestFailedError(failing, "scripted per-request failure")
        return [self._advance(request) for request in list(self.scheduler.running)]

    def _advance(self, request: _ScriptedRequest) -> EngineCoreOutput:
        new: list[int] = []
        status = None
        params = request.params
        while len(new) < self.tokens_per_step and status is None:
            position = len(request.output)
            token = request.reply[position % len(request.reply)] if request.reply else self.tokenizer.glm.endoftext
            if token in request.stop_ids and position < params.min_tokens:
                token = self.tokenizer.encode(" ")[0]  # min_tokens masks stop ids, as the sampler does
            request.output.append(token)
            new.append(token)
            total = len(request.prompt_token_ids) + len(request.output)
            if len(request.output) >= request.max_tokens or total >= self.max_model_len:
                status = RequestStatus.FINISHED_LENGTH
            elif token in request.stop_ids and len(request.output) > params.min_tokens:
                status = RequestStatus.FINISHED_STOPPED
        self.scheduler.kv.hold(request.request_id, len(request.prompt_token_ids) + len(request.output))
        logprobs = None
        if params.logprobs is not None:
            k = params.logprobs
            logprobs = tuple(SampledLogprobs(-0.25, 1, tuple(range(k)), tuple(-1.0 - i for i in range(k)))
                             for _ in new)
        stop_reason = new[-1] if status is RequestStatus.FINISHED_STOPPED and new[-1] in params.stop_token_ids \
            else None
        if status is not None:
            self._release(request.request_id)
        return EngineCoreOutput(request_id=request.request_id, new_token_ids=tuple(new), new_logprobs=logprobs,
                                finish_reason=FINISH_REASONS.get(status) if status else None,
                                stop_reason=stop_reason, num_cached_tokens=0)

    def _release(self, request_id: str) -> _ScriptedRequest | None:
        request = self.requests.pop(request_id, None)
        if request is None:
            return None
        scheduler = self.scheduler
        for queue in (scheduler.running, scheduler.waiting):
            if request in queue:
                queue.remove(request)
        scheduler.kv.used.pop(request_id, None)
        return request
