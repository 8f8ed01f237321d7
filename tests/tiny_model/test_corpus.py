"""The corpus generator: seeded, rendered exactly as the server renders, and consistent with the output parser."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts.tiny_model.conversations import generate
from scripts.tiny_model.render import ConversationRenderer
from scripts.tiny_model.scoring import schema_errors, score_turn
from scripts.tiny_model.tools import TOOLS
from tokenizer.output_parser import parse_output

REFERENCE_TEMPLATE = Path("/work/shared/reference/glm45_chat_template.jinja")


@pytest.fixture(scope="module")
def renderer() -> ConversationRenderer:
    return ConversationRenderer()


@pytest.fixture(scope="module")
def conversations():
    return generate(seed=123, count=300)


def test_generation_is_seeded():
    first = [c.to_json() for c in generate(seed=5, count=40)]
    assert first == [c.to_json() for c in generate(seed=5, count=40)]
    assert first != [c.to_json() for c in generate(seed=6, count=40)]


def test_corpus_covers_every_case(conversations):
    kinds = {(c.kind, c.enable_thinking) for c in conversations}
    assert kinds == {(k, t) for k in ("tool", "arithmetic", "smalltalk", "echo") for t in (True, False)}
    called = {call["name"] for c in conversations for call in c.expected["calls"]}
    assert called == set(TOOLS)
    assert any(len(c.expected["calls"]) > 1 for c in conversations), "parallel calls"
    assert any(c.tools and not c.expected["calls"] for c in conversations), "tools offered but not relevant"
    values = [v for c in conversations for call in c.expected["calls"] for v in call["arguments"].values()]
    strings = [v for v in values if isinstance(v, str)]
    for needle in ('"', "\\", "\n", "é"):
        assert any(needle in s for s in strings), f"no string argument contains {needle!r}"
    for kind in (bool, int, float, list):
        assert any(type(v) is kind for v in values), f"no argument of type {kind.__name__}"


def test_expected_calls_match_their_schemas(conversations):
    for conv in conversations:
        offered = {t["function"]["name"]: t["function"]["parameters"] for t in conv.tools}
        for call in conv.expected["calls"]:
            assert schema_errors(call["arguments"], offered[call["name"]]) == []


def test_segments_concatenate_to_the_rendered_conversation(renderer, conversations):
    for conv in conversations[:120]:
        segments = renderer.segments(conv)
        whole = renderer.render(conv, len(conv.messages), add_generation_prompt=False)
        assert "".join(t for t, _ in segments) == whole + "<|user|>"
        outputs = [t for t, is_output in segments if is_output]
        assert outputs and all(t.endswith(("<|observation|>", "<|user|>")) for t in outputs)
        # The first segment is a prompt ending with the generation prompt.
        assert not segments[0][1] and segments[0][0].endswith(
            "<|assistant|>" if conv.enable_thinking else "<|assistant|>\n<think></think>")


def test_outputs_start_as_the_model_must_write_them(renderer, conversations):
    for conv in conversations[:120]:
        for text, is_output in renderer.segments(conv):
            if is_output:
                assert text.startswith("\n<think>") if conv.enable_thinking else not text.count("<think>")


def test_target_turn_parses_back_to_the_expected_calls(renderer, conversations):
    """Scoring the corpus' own target turn gives full marks: generator, template and parser agree."""
    for conv in conversations:
        prompt = renderer.prompt(conv)
        full = renderer.render(conv, conv.target_index + 1, add_generation_prompt=False)
        output = full[len(prompt):]
        score = score_turn(conv, output)
        assert score.problems == (), (conv.kind, output, score.problems)
        parsed = parse_output(output, conv.tools or None, thinking=conv.enable_thinking)
        assert [(c.name, c.arguments_dict()) for c in parsed.tool_calls] == [
            (c["name"], c["arguments"]) for c in conv.expected["calls"]]


def test_rendering_matches_transformers(renderer, conversations):
    transformers_utils = pytest.importorskip("transformers.utils.chat_template_utils")
    template = REFERENCE_TEMPLATE.read_text() if REFERENCE_TEMPLATE.is_file() else renderer.template.source
    for conv in conversations[:40]:
        ours = renderer.render(conv, len(conv.messages), add_generation_prompt=False)
        theirs, _ = transformers_utils.render_jinja_template(
            [conv.messages], tools=conv.tools or None, chat_template=template, enable_thinking=conv.enable_thinking)
        assert ours == theirs[0]


def test_conversations_survive_jsonl(tmp_path, conversations):
    from scripts.tiny_model.corpus import read_jsonl, write_jsonl

    write_jsonl(conversations[:30], tmp_path / "c.jsonl")
    assert [c.to_json() for c in read_jsonl(tmp_path / "c.jsonl")] == [c.to_json() for c in conversations[:30]]
    json.loads((tmp_path / "c.jsonl").read_text().splitlines()[0])


def test_schema_errors_name_the_bad_argument():
    params = TOOLS["get_weather"]["function"]["parameters"]
    assert schema_errors({"city": "Oslo", "days": 3}, params) == []
    assert schema_errors({"days": 3}, params) == ["missing required 'city'"]
    assert schema_errors({"city": "Oslo", "days": "3"}, params) == ["days: str where integer expected"]
    assert schema_errors({"city": "Oslo", "days": True}, params) == ["days: boolean where integer expected"]
    assert schema_errors({"city": "Oslo", "unit": "kelvin"}, params) == [
        "unit: 'kelvin' not in enum ['celsius', 'fahrenheit']"]
    assert schema_errors({"city": "Oslo", "wind": 1}, params) == ["unknown argument 'wind'"]
    email = TOOLS["send_email"]["function"]["parameters"]
    assert schema_errors({"to": ["a@b.c", 3], "subject": "s", "body": "b"}, email) == [
        "to[1]: int where string expected"]
