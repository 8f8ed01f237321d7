"""Recorded conversations: `--dataset-name sharegpt` (a ShareGPT JSON file) and `chat` (JSONL conversations).

Both send the prompt turns and use the recorded reply's length as max_tokens (or a fixed `--*-output-len`).
Malformed entries raise naming the file, the entry and the field; entries with nothing to reply to are skipped.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from loadtests.dataset_config import DEFAULT_CHAT_DATASET_DIR, DatasetConfig
from loadtests.sample_request import SampleRequest
from loadtests.token_counter import TokenCounter

# ShareGPT filters of vLLM's benchmark (applied when lengths are known): too short or too long pairs are skipped.
SHAREGPT_MIN_LEN = 4
SHAREGPT_MAX_PROMPT_LEN = 1024
SHAREGPT_MAX_TOTAL_LEN = 2048
# NOTE: without --tokenizer a reply's length is estimated at 4 characters per token; only max_tokens depends on it.
CHARS_PER_TOKEN_ESTIMATE = 4


def _length(text: str, counter: TokenCounter | None) -> int:
    if counter is not None:
        return counter.count(text)
    return max(1, round(len(text) / CHARS_PER_TOKEN_ESTIMATE))


def _fill(rng: random.Random, valid: list[SampleRequest], num_prompts: int, source: str) -> list[SampleRequest]:
    """First `num_prompts` of `valid`; repeats random entries when the file holds fewer."""
    if not valid:
        raise ValueError(f"dataset_path: {source} holds no usable conversation")
    if len(valid) >= num_prompts:
        return valid[:num_prompts]
    print(f"NOTE: {source} holds {len(valid)} usable conversations; repeating some to reach {num_prompts}")
    return valid + [rng.choice(valid) for _ in range(num_prompts - len(valid))]


def sample_sharegpt_requests(config: DatasetConfig, counter: TokenCounter | None) -> list[SampleRequest]:
    assert config.dataset_path is not None
    path = Path(config.dataset_path)
    entries = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(entries, list):
        raise ValueError(f"dataset_path: {path} must hold a JSON list of ShareGPT entries")
    rng = random.Random(config.seed)
    order = list(range(len(entries)))
    rng.shuffle(order)
    valid: list[SampleRequest] = []
    for index in order:
        turns = _sharegpt_turns(entries[index], f"{path}[{index}]")
        if len(turns) < 2:
            continue
        prompt, reply = turns[0], turns[1]
        prompt_len = counter.count(prompt) if counter is not None else None
        output_len = config.sharegpt_output_len or _length(reply, counter)
        if not _is_valid_pair(prompt_len, output_len, fixed_output=config.sharegpt_output_len is not None):
            continue
        valid.append(SampleRequest(prompt=prompt, prompt_len=prompt_len, expected_output_len=output_len))
        if len(valid) == config.num_prompts:
            break
    return _fill(rng, valid, config.num_prompts, str(path))


def _sharegpt_turns(entry: Any, where: str) -> list[str]:
    conversations = entry.get("conversations") if isinstance(entry, dict) else None
    if not isinstance(conversations, list):
        raise ValueError(f"{where}: 'conversations' must be a list of turns")
    turns = []
    for i, turn in enumerate(conversations):
        value = turn.get("value") if isinstance(turn, dict) else None
        if not isinstance(value, str):
            raise ValueError(f"{where}.conversations[{i}]: 'value' must be a string")
        turns.append(value)
    return turns


def _is_valid_pair(prompt_len: int | None, output_len: int, fixed_output: bool) -> bool:
    if not fixed_output and output_len < SHAREGPT_MIN_LEN:
        return False
    if prompt_len is None:
        return True
    if prompt_len < SHAREGPT_MIN_LEN or prompt_len > SHAREGPT_MAX_PROMPT_LEN:
        return False
    return prompt_len + output_len <= SHAREGPT_MAX_TOTAL_LEN


def chat_dataset_files(path: Path | None) -> list[Path]:
    """The JSONL files of the chat dataset: `path` itself, or the *.jsonl below a directory (recursively), the
    held-out ones (eval/held/test in the name) only when there are any."""
    path = Path(path) if path is not None else DEFAULT_CHAT_DATASET_DIR
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise ValueError(f"dataset_path: {path} does not exist (the chat dataset is a JSONL file or a directory)")
    files = sorted(path.rglob("*.jsonl"))
    held_out = [f for f in files if any(word in f.name for word in ("eval", "held", "test"))]
    if not files:
        raise ValueError(f"dataset_path: no *.jsonl file under {path}")
    return held_out or files


def sample_chat_requests(config: DatasetConfig, counter: TokenCounter | None) -> list[SampleRequest]:
    rng = random.Random(config.seed)
    valid: list[SampleRequest] = []
    files = chat_dataset_files(config.dataset_path)
    for file in files:
        for line_no, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                sample = _chat_sample(json.loads(line), f"{file}:{line_no}", config, counter)
                if sample is not None:
                    valid.append(sample)
    rng.shuffle(valid)
    return _fill(rng, valid, config.num_prompts, ", ".join(map(str, files)))


def _reply_index(record: dict[str, Any], messages: list[dict[str, Any]], where: str) -> int:
    """`target_index` when the record names the evaluated assistant turn, else the last assistant turn (-1: none)."""
    target = record.get("target_index")
    if target is None:
        return max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=-1)
    if not isinstance(target, int) or not 0 < target < len(messages) or messages[target]["role"] != "assistant":
        raise ValueError(f"{where}: target_index must index an assistant message after the first, got {target!r}")
    return target


def _chat_sample(
    record: Any, where: str, config: DatasetConfig, counter: TokenCounter | None
) -> SampleRequest | None:
    """Prompt = the turns before the reply turn; max_tokens = the reply's length (reasoning and calls included)."""
    messages = _openai_messages(record, where)
    reply_at = _reply_index(record, messages, where)
    users = [m for m in messages[: max(reply_at, 0)] if m["role"] == "user"]
    if reply_at < 1 or not users:
        return None
    reply = messages[reply_at]
    reply_text = (reply.get("reasoning_content") or "") + (reply.get("content") or "")
    for call in reply.get("tool_calls") or ():
        reply_text += json.dumps(call.get("function", call))
    prompt = _text_of(users[-1].get("content"))
    tools = record.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise ValueError(f"{where}: 'tools' must be a list")
    thinking = record.get("enable_thinking")
    return SampleRequest(
        prompt=prompt,
        prompt_len=counter.count(prompt) if counter is not None else None,
        expected_output_len=config.chat_output_len or _length(reply_text, counter),
        messages=tuple(to_wire_messages(messages[:reply_at])),
        tools=tuple(tools) if tools else None,
        extra_body={"chat_template_kwargs": {"enable_thinking": thinking}} if isinstance(thinking, bool) else None,
    )


def to_wire_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages as the OpenAI wire wants them: tool-call arguments as JSON strings, calls with ids, and tool
    results with the `tool_call_id` of the call they answer (in order), where the record left them out."""
    wire, pending_ids, num_calls = [], [], 0
    for message in messages:
        message = dict(message)
        if message["role"] == "assistant" and message.get("tool_calls"):
            calls = []
            for call in message["tool_calls"]:
                call = {"type": "function", **call, "function": dict(call.get("function") or {})}
                if not isinstance(call["function"].get("arguments", ""), str):
                    call["function"]["arguments"] = json.dumps(call["function"]["arguments"])
                call.setdefault("id", f"call_{num_calls}")
                num_calls += 1
                calls.append(call)
            message["tool_calls"] = calls
            pending_ids = [c["id"] for c in calls]
        elif message["role"] == "tool" and "tool_call_id" not in message and pending_ids:
            message["tool_call_id"] = pending_ids.pop(0)
        wire.append(message)
    return wire


_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


def _openai_messages(record: Any, where: str) -> list[dict[str, Any]]:
    """OpenAI messages from a record holding `messages` (OpenAI format) or `conversations` (ShareGPT format)."""
    if isinstance(record, dict) and isinstance(record.get("messages"), list):
        messages = record["messages"]
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                raise ValueError(f"{where}: messages[{i}] needs a string 'role'")
        return messages
    if isinstance(record, dict) and isinstance(record.get("conversations"), list):
        messages = []
        for i, turn in enumerate(record["conversations"]):
            role = _SHAREGPT_ROLES.get(turn.get("from")) if isinstance(turn, dict) else None
            if role is None or not isinstance(turn.get("value"), str):
                raise ValueError(f"{where}: conversations[{i}] needs 'from' in {sorted(_SHAREGPT_ROLES)} and 'value'")
            messages.append({"role": role, "content": turn["value"]})
        return messages
    raise ValueError(f"{where}: a chat record needs 'messages' (OpenAI format) or 'conversations' (ShareGPT)")


def _text_of(content: Any) -> str:
    """Message content as text: a string, or the text parts of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""
