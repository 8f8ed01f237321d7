"""Incremental detokenization: whole UTF-8 characters, special tokens, stop strings across tokens."""

from __future__ import annotations

from tokenizer import IncrementalDetokenizer, Tokenizer

TEXT = "\n<think>plan</think>\nNaïve café: 北京 😀🎉 — done."


def _stream(detokenizer: IncrementalDetokenizer, ids: list[int], per_step: int = 1) -> list[str]:
    pieces = [detokenizer.push(ids[i : i + per_step]).text for i in range(0, len(ids), per_step)]
    pieces.append(detokenizer.finish().text)
    return pieces


def test_multibyte_characters_split_across_tokens_come_out_whole(glm_tokenizer: Tokenizer) -> None:
    text = "x🦊龍🦊é"
    # Not in the tiny tokenizer's training text: each of these characters is split into byte tokens.
    assert all(len(glm_tokenizer.encode(char)) > 1 for char in "🦊龍")
    pieces = _stream(glm_tokenizer.detokenizer(skip_special_tokens=False), glm_tokenizer.encode(text))
    assert "".join(pieces) == text
    assert all("\ufffd" not in piece for piece in pieces)
    assert [piece for piece in pieces if piece] == ["x", "🦊", "龍", "🦊", "é"]


def test_streamed_text_equals_decode(glm_tokenizer: Tokenizer) -> None:
    ids = glm_tokenizer.encode(TEXT)
    for per_step in (1, 2, 3, 7):
        assert "".join(_stream(glm_tokenizer.detokenizer(skip_special_tokens=False), ids, per_step)) == TEXT


def test_skip_special_tokens_and_hidden_stop_tokens(glm_tokenizer: Tokenizer) -> None:
    glm = glm_tokenizer.glm
    ids = [glm.gmask, glm.sop, *glm_tokenizer.encode("<think>a</think>b"), glm.user]
    # Role/mask tokens are special; the tag tokens are not.
    assert "".join(_stream(glm_tokenizer.detokenizer(skip_special_tokens=True, hide_stop_tokens=False), ids)) == (
        "<think>a</think>b"
    )
    # Parser input: special tokens kept, the stop token that ended generation hidden.
    assert (
        "".join(_stream(glm_tokenizer.detokenizer(skip_special_tokens=False), ids)) == "[gMASK]<sop><think>a</think>b"
    )
    detokenizer = glm_tokenizer.detokenizer(skip_special_tokens=False, hide_stop_tokens=False)
    assert "".join(_stream(detokenizer, ids)).endswith("b<|user|>")


def test_skipping_equals_decode_and_keeps_the_kept_ids(glm_tokenizer: Tokenizer) -> None:
    glm = glm_tokenizer.glm
    ids = [glm.gmask, glm.sop, *glm_tokenizer.encode("x <think>a</think> b"), glm.system, glm.tool_call_start,
           *glm_tokenizer.encode("北京"), glm.endoftext, glm.assistant]
    for per_step in (1, 2, 5):
        detokenizer = glm_tokenizer.detokenizer(skip_special_tokens=True, hide_stop_tokens=False)
        assert "".join(_stream(detokenizer, ids, per_step)) == glm_tokenizer.decode(ids, skip_special_tokens=True)
    # A kept id survives skipping even when special (the chat route keeps the parser's tags this way).
    kept = glm_tokenizer.detokenizer(skip_special_tokens=True, keep_token_ids={glm.gmask, glm.think_start})
    assert "".join(_stream(kept, ids)) == "[gMASK]x <think>a</think> b<tool_call>北京"
    assert glm.think_start in glm.parser_tag_ids and glm.arg_value_end in glm.parser_tag_ids
    assert not glm.parser_tag_ids & glm_tokenizer.special_token_ids  # GLM-4.5's tags are not special


def test_stop_string_across_token_boundaries(glm_tokenizer: Tokenizer) -> None:
    ids = glm_tokenizer.encode("alpha beta gamma delta")
    stop = "ta gam"
    assert not any(stop in glm_tokenizer.decode([token_id]) for token_id in ids)
    detokenizer = glm_tokenizer.detokenizer(stop_strings=[stop])
    outputs = [detokenizer.push([token_id]) for token_id in ids]
    assert "".join(output.text for output in outputs) == "alpha be"
    assert [output.stop_string for output in outputs if output.stop_string] == [stop]
    assert detokenizer.stopped and detokenizer.finish().text == "" and detokenizer.text == "alpha be"
    included = glm_tokenizer.detokenizer(stop_strings=[stop], include_stop_str_in_output=True)
    assert "".join(_stream(included, ids)) == "alpha beta gam"


def test_stop_string_never_releases_later_text_in_the_same_step(glm_tokenizer: Tokenizer) -> None:
    detokenizer = glm_tokenizer.detokenizer(stop_strings=["beta"])
    output = detokenizer.push(glm_tokenizer.encode("alpha beta gamma"))
    assert (output.text, output.stop_string) == ("alpha ", "beta")
    assert detokenizer.push(glm_tokenizer.encode(" more")).text == ""


def test_unfinished_character_is_flushed_at_finish(glm_tokenizer: Tokenizer) -> None:
    ids = glm_tokenizer.encode("a🦊")
    detokenizer = glm_tokenizer.detokenizer()
    released = [detokenizer.push([token_id]).text for token_id in ids[:-1]]
    assert "".join(released) == "a"  # the emoji's first bytes wait for the rest
    assert detokenizer.finish().text == "\ufffd"  # generation ended mid-character


def test_possible_stop_prefix_is_released_at_finish(glm_tokenizer: Tokenizer) -> None:
    detokenizer = glm_tokenizer.detokenizer(stop_strings=["xyz"])
    assert detokenizer.push(glm_tokenizer.encode("abc x")).text == "abc "
    assert detokenizer.finish().text == "x"
