"""SSE stream reading: which chunks time TTFT/ITL, usage pickup, and every way a stream can fail."""

import json

import pytest

from loadtests.stream_accumulator import (
    INCOMPLETE_STREAM,
    INVALID_CHUNK,
    MISSING_USAGE,
    NO_OUTPUT,
    STREAM_ERROR,
    StreamAccumulator,
    StreamError,
    error_message_of_body,
)


def chat(delta, finish=None):
    return "data: " + json.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}], "usage": None})


def usage(completion, prompt=7):
    body = {"choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion}}
    return "data: " + json.dumps(body)


def feed(lines_at):
    stream = StreamAccumulator(start_time=10.0)
    for t, line in lines_at:
        stream.feed_line(line, t)
    return stream


def test_chat_stream_timings_follow_output_chunks_only():
    stream = feed([
        (10.1, chat({"role": "assistant", "content": ""})),  # role-only: not an output chunk
        (10.15, ": ping"),
        (10.2, ""),
        (10.5, chat({"reasoning_content": "think", "content": None})),  # first output: reasoning counts
        (10.7, chat({"content": " a b"})),  # one chunk, two tokens (MTP-like)
        (11.0, chat({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]})),
        (11.1, chat({}, finish="tool_calls")),  # finish chunk: not an output chunk
        (11.2, usage(4)),
        (11.9, "data: [DONE]"),
    ])
    stream.finish()
    assert stream.ttft == pytest.approx(0.5)
    assert stream.itl == pytest.approx([0.2, 0.3])
    assert stream.last_event_time == 11.2  # the usage chunk; [DONE] is not a data event
    assert stream.completion_tokens == 4 and stream.prompt_tokens == 7
    assert "".join(stream.text) == " a b{}" and "".join(stream.reasoning) == "think"
    assert stream.finish_reason == "tool_calls"


def test_completions_text_chunks_and_vllm_reasoning_alias():
    stream = feed([
        (10.2, 'data: {"choices": [{"index": 0, "text": "x", "finish_reason": null}]}'),
        (10.3, 'data:{"choices": [{"index": 0, "text": "", "finish_reason": "stop"}]}'),  # no space after colon
        (10.4, usage(1)),
        (10.5, "data: [DONE]"),
    ])
    stream.finish()
    assert stream.ttft == pytest.approx(0.2) and stream.itl == []
    alias = feed([(10.3, chat({"reasoning": "r"})), (10.4, usage(1)), (10.5, "data: [DONE]")])
    assert alias.ttft == pytest.approx(0.3) and alias.reasoning == ["r"]


def test_last_usage_wins_with_continuous_usage_stats():
    body = {"choices": [{"index": 0, "delta": {"content": "a"}}], "usage": {"completion_tokens": 1}}
    stream = feed([(10.1, "data: " + json.dumps(body)), (10.2, usage(3)), (10.3, "data: [DONE]")])
    assert stream.completion_tokens == 3


@pytest.mark.parametrize(
    "lines, kind",
    [
        ([chat({"content": "a"}), usage(1)], INCOMPLETE_STREAM),
        ([chat({"role": "assistant", "content": ""}), chat({}, "stop"), usage(0), "data: [DONE]"], NO_OUTPUT),
        ([chat({"content": "a"}), "data: [DONE]"], MISSING_USAGE),
        ([chat({"content": "a"}), 'data: {"choices": [], "usage": {"completion_tokens": null}}', "data: [DONE]"],
         MISSING_USAGE),
    ],
)
def test_finish_rejects_incomplete_streams(lines, kind):
    stream = feed([(10.0 + i, line) for i, line in enumerate(lines)])
    with pytest.raises(StreamError) as info:
        stream.finish()
    assert info.value.kind == kind


@pytest.mark.parametrize(
    "line, kind, message",
    [
        ('data: {"error": {"message": "engine died", "type": "server_error"}}', STREAM_ERROR, "engine died"),
        ("data: {not json", INVALID_CHUNK, "not JSON"),
        ("data: [1, 2]", INVALID_CHUNK, "not a JSON object"),
    ],
)
def test_bad_events_raise_with_kind(line, kind, message):
    stream = StreamAccumulator(start_time=0.0)
    stream.feed_line(chat({"content": "a"}), 0.1)
    with pytest.raises(StreamError) as info:
        stream.feed_line(line, 0.2)
    assert info.value.kind == kind and message in info.value.message


def test_data_after_done_is_invalid():
    stream = feed([(10.1, chat({"content": "a"})), (10.2, "data: [DONE]")])
    with pytest.raises(StreamError) as info:
        stream.feed_line(chat({"content": "b"}), 10.3)
    assert info.value.kind == INVALID_CHUNK


def test_error_bodies_give_their_message():
    assert error_message_of_body(b'{"error": {"message": "no such model", "code": "model_not_found"}}') == (
        "no such model"
    )
    assert error_message_of_body(b'{"detail": "Not Found"}') == "Not Found"
    assert error_message_of_body(b"<html>bad gateway</html>") == "<html>bad gateway</html>"
