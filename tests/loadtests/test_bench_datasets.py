"""Datasets of the load generator: random word prompts (exact token lengths with a tokenizer), ShareGPT, chat."""

import json
import random

import pytest

from loadtests.conversation_datasets import chat_dataset_files, to_wire_messages
from loadtests.dataset_config import DatasetConfig
from loadtests.datasets import get_samples
from loadtests.random_dataset import length_range
from loadtests.token_counter import TokenCounter
from loadtests.words import WORDS
from tokenizer.bpe_builder import build_glm_tokenizer


@pytest.fixture(scope="module")
def counter(tmp_path_factory):
    rng = random.Random(0)
    texts = [" ".join(rng.choice(WORDS) for _ in range(40)) for _ in range(300)]
    texts += ["The quick brown fox, 123 times!", "Hello there. How are you?"] * 20
    directory = build_glm_tokenizer(texts, tmp_path_factory.mktemp("tok"), vocab_size=600)
    return TokenCounter.from_path(directory)


def test_random_lengths_follow_range_ratio_and_tokens_are_exact(counter):
    config = DatasetConfig(num_prompts=40, random_input_len=30, random_output_len=20, random_range_ratio=0.5)
    samples = get_samples(config, counter)
    in_low, in_high = length_range(30, 0.5)
    assert (in_low, in_high) == (15, 45)
    for s in samples:
        assert 10 <= s.expected_output_len <= 30
        assert s.prompt_len == counter.count(s.prompt)
        assert in_low <= s.prompt_len <= in_high
        assert all(word in WORDS for word in s.prompt.split())  # valid text made of whole words
        assert s.messages is None
    assert len({s.expected_output_len for s in samples}) > 5  # the lengths really vary


def test_random_is_deterministic_per_seed_and_has_shared_prefix(counter):
    config = DatasetConfig(num_prompts=5, random_input_len=12, random_output_len=4, random_prefix_len=8, seed=3)
    a, b = get_samples(config, counter), get_samples(config, counter)
    assert a == b
    other = get_samples(DatasetConfig(num_prompts=5, random_input_len=12, random_output_len=4, seed=4), counter)
    assert [s.prompt for s in other] != [s.prompt for s in a]
    split = [s.prompt.split() for s in a]
    common = next(i for i in range(len(split[0])) if len({tuple(w[: i + 1]) for w in split}) > 1)
    assert counter.count(" ".join(split[0][:common])) == 8  # the shared words are the 8-token prefix
    assert all(s.prompt_len == 20 for s in a)
    assert all(s.expected_output_len == 4 for s in a)


def test_random_without_tokenizer_uses_one_word_per_token():
    samples = get_samples(DatasetConfig(num_prompts=3, random_input_len=17, random_output_len=2), None)
    assert all(len(s.prompt.split()) == 17 and s.prompt_len is None for s in samples)


@pytest.mark.parametrize(
    "field, value",
    [("dataset_name", "sonnet"), ("num_prompts", 0), ("random_input_len", -1), ("random_output_len", 0),
     ("random_range_ratio", 1.0), ("random_prefix_len", -2), ("sharegpt_output_len", 0)],
)
def test_dataset_config_names_the_bad_field(field, value):
    with pytest.raises(ValueError, match=field):
        DatasetConfig(**{field: value})


def test_sharegpt_requires_a_path():
    with pytest.raises(ValueError, match="dataset_path"):
        DatasetConfig(dataset_name="sharegpt")


def _sharegpt(tmp_path, entries):
    path = tmp_path / "sg.json"
    path.write_text(json.dumps(entries))
    return path


def test_sharegpt_takes_first_two_turns_and_filters_short_pairs(tmp_path, counter):
    long = "the quick brown fox jumps over the lazy dog " * 3
    entries = [
        {"id": "a", "conversations": [{"from": "human", "value": long}, {"from": "gpt", "value": long + "yes"}]},
        {"id": "b", "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": long}]},  # short
        {"id": "c", "conversations": [{"from": "human", "value": long}]},  # no reply
    ]
    config = DatasetConfig(dataset_name="sharegpt", dataset_path=_sharegpt(tmp_path, entries), num_prompts=3)
    samples = get_samples(config, counter)
    assert len(samples) == 3 and {s.prompt for s in samples} == {long}  # only "a", repeated to fill
    assert samples[0].expected_output_len == counter.count(long + "yes")
    fixed = get_samples(DatasetConfig(dataset_name="sharegpt", dataset_path=config.dataset_path, num_prompts=1,
                                      sharegpt_output_len=7), counter)
    assert fixed[0].expected_output_len == 7


def test_sharegpt_malformed_entry_names_the_entry(tmp_path):
    path = _sharegpt(tmp_path, [{"conversations": [{"from": "human", "value": 3}, {"from": "gpt", "value": "x"}]}])
    with pytest.raises(ValueError, match=r"sg.json\[0\].conversations\[0\]: 'value'"):
        get_samples(DatasetConfig(dataset_name="sharegpt", dataset_path=path, num_prompts=1), None)


def test_chat_jsonl_prompt_is_history_before_last_assistant_turn(tmp_path, counter):
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    lines = [
        {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "first question"},
                      {"role": "assistant", "content": "first answer"}, {"role": "user", "content": "second one"},
                      {"role": "assistant", "reasoning_content": "hmm let me think", "content": "done"}],
         "tools": tools},
        {"conversations": [{"from": "human", "value": "hello there"}, {"from": "gpt", "value": "hi you"}]},
        {"messages": [{"role": "user", "content": "no reply recorded"}]},  # skipped: nothing to reply to
    ]
    path = tmp_path / "held_out.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    samples = get_samples(DatasetConfig(dataset_name="chat", dataset_path=path, num_prompts=2), counter)
    by_prompt = {s.prompt: s for s in samples}
    assert set(by_prompt) == {"second one", "hello there"}
    multi = by_prompt["second one"]
    assert [m["role"] for m in multi.messages] == ["system", "user", "assistant", "user"]
    assert multi.tools == tuple(tools)
    assert multi.expected_output_len == counter.count("hmm let me thinkdone")
    assert by_prompt["hello there"].messages == ({"role": "user", "content": "hello there"},)


def test_chat_directory_prefers_held_out_files_and_reports_missing(tmp_path):
    (tmp_path / "train.jsonl").write_text("")
    (tmp_path / "heldout.jsonl").write_text("")
    assert chat_dataset_files(tmp_path) == [tmp_path / "heldout.jsonl"]
    with pytest.raises(ValueError, match="dataset_path"):
        chat_dataset_files(tmp_path / "missing")


def test_chat_malformed_record_names_file_and_line(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"messages": [{"content": "no role"}]}) + "\n")
    with pytest.raises(ValueError, match=r"c.jsonl:1: messages\[0\]"):
        get_samples(DatasetConfig(dataset_name="chat", dataset_path=path, num_prompts=1), None)


def test_chat_record_with_target_index_thinking_switch_and_tool_calls(tmp_path):
    messages = [
        {"role": "user", "content": "weather in Paris please"},
        {"role": "assistant", "content": "", "reasoning_content": "call the tool",
         "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": "sunny"},
        {"role": "user", "content": "and tomorrow?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "day": 1}}}]},
        {"role": "tool", "content": "rain"},
        {"role": "assistant", "content": "Rain tomorrow."},
    ]
    record = {"kind": "tool", "messages": messages, "tools": [], "enable_thinking": False, "target_index": 4}
    nested = tmp_path / "glm-4.5-tiny"
    nested.mkdir()
    (nested / "eval.jsonl").write_text(json.dumps(record) + "\n")
    (tmp_path / "train.jsonl").write_text("")
    [sample] = get_samples(DatasetConfig(dataset_name="chat", dataset_path=tmp_path, num_prompts=1), None)
    assert [m["role"] for m in sample.messages] == ["user", "assistant", "tool", "user"]
    call = sample.messages[1]["tool_calls"][0]
    assert call["function"]["arguments"] == '{"city": "Paris"}' and call["id"] == "call_0"
    assert sample.messages[2]["tool_call_id"] == "call_0"
    assert messages[1]["tool_calls"][0]["function"]["arguments"] == {"city": "Paris"}  # the record is untouched
    assert sample.prompt == "and tomorrow?" and sample.tools is None
    assert sample.extra_body == {"chat_template_kwargs": {"enable_thinking": False}}
    bad = dict(record, target_index=3)
    (nested / "eval.jsonl").write_text(json.dumps(bad) + "\n")
    with pytest.raises(ValueError, match="target_index"):
        get_samples(DatasetConfig(dataset_name="chat", dataset_path=tmp_path, num_prompts=1), None)


def test_chat_reads_the_embedded_model_corpus_format(tmp_path, counter):
    corpus = pytest.importorskip("scripts.tiny_model.corpus")
    conversations = pytest.importorskip("scripts.tiny_model.conversations")
    path = tmp_path / "eval.jsonl"
    convs = conversations.generate(seed=5, count=12)
    corpus.write_jsonl(convs, path)
    samples = get_samples(DatasetConfig(dataset_name="chat", dataset_path=path, num_prompts=12, seed=1), counter)
    # The prompt is the history right before the evaluated assistant turn, in wire form, with its thinking switch
    # (two conversations may share a history and differ only in the switch).
    def key(messages, thinking: bool) -> str:
        return json.dumps([messages, thinking])

    by_key = {key(s.messages, s.extra_body["chat_template_kwargs"]["enable_thinking"]): s for s in samples}
    assert len(samples) == len(by_key) == 12
    for conv in convs:
        sample = by_key[key(to_wire_messages(conv.messages[: conv.target_index]), conv.enable_thinking)]
        assert sample.extra_body == {"chat_template_kwargs": {"enable_thinking": conv.enable_thinking}}
        assert sample.tools == (tuple(conv.tools) or None)
        assert sample.expected_output_len >= 1
        json.dumps(sample.messages)  # wire-serialisable
        for message in sample.messages:
            for call in message.get("tool_calls") or ():
                assert isinstance(call["function"]["arguments"], str)
