"""Pure pieces of the server, without a process: argument parsing, error envelopes, sampling-field mapping,
metric buckets, API-key checks."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from server.args import ATTENTION_BACKENDS, ServerArgs, parse_api_keys, parse_size
from server.cli import args_from_namespace, build_parser, resolve_model
from server.context import ServingContext
from server.errors import APIError, from_pydantic
from server.metrics import one_two_five_buckets
from server.protocol import ChatCompletionRequest, CompletionRequest
from server.sampling import build_sampling_params, resolve_max_tokens
from tokenizer.generation_config import GenerationDefaults

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize("text, expected", [("8589934592", 8589934592), ("8GiB", 8 * 2**30), ("512MB", 512 * 10**6),
                                            ("1.5G", 1_500_000_000), ("64 kib", 65536)])
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "GiB", "12 parsecs", "-5"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_size(text)


def test_api_keys_from_cli_or_environment() -> None:
    assert parse_api_keys(["a"], "b,c") == ("a",)
    assert parse_api_keys(None, " b , c ,") == ("b", "c")
    assert parse_api_keys(None, None) == ()


@pytest.mark.parametrize("field, value", [("port", 70000), ("max_num_seqs", 0), ("tool_call_streaming", "fast"),
                                          ("reasoning_field", "both"), ("shutdown_timeout", -1), ("api_keys", ("",))])
def test_server_args_name_the_bad_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        ServerArgs(model="/m", served_model_names=("m",), **{field: value})


def test_cli_flags_map_onto_server_args(tmp_path) -> None:
    ns = build_parser().parse_args([
        "--model", str(tmp_path), "--served-model-name", "a", "b", "--api-key", "k1", "k2", "--port", "0",
        "--kv-cache-memory", "1GiB", "--no-enable-prefix-caching", "--tool-call-streaming", "incremental",
        "--max-num-queued-reqs", "7", "--default-chat-template-kwargs", '{"enable_thinking": false}'])
    args = args_from_namespace(ns)
    assert args.served_model_names == ("a", "b") and args.model_name == "a"
    assert args.api_keys == ("k1", "k2") and args.kv_cache_memory == 2**30 and not args.enable_prefix_caching
    assert args.max_queued_requests == 7 and args.default_chat_template_kwargs == {"enable_thinking": False}
    assert args_from_namespace(build_parser().parse_args(["--model", str(tmp_path)])).served_model_names == \
        (tmp_path.name,)


def test_engine_flags_reach_the_engine_config(tmp_path) -> None:
    from engine.config import ModelConfig
    from model_factory import TINY_CONFIG
    from server.engine_builder import build_engine_config

    model_config = ModelConfig.from_dict({**TINY_CONFIG, "architectures": ["Glm4MoeForCausalLM"]})

    def config(*flags: str):
        args = args_from_namespace(build_parser().parse_args(["--model", str(tmp_path), "--device", "cpu", *flags]))
        return args, build_engine_config(args, model_config)

    args, default = config()
    assert (args.attention_backend, args.enforce_eager, args.async_scheduling) == ("auto", False, None)
    assert (default.attention_backend, default.enforce_eager) == ("auto", False)
    assert not default.scheduler.async_scheduling  # the CPU default
    args, chosen = config("--attention-backend", "torch", "--enforce-eager", "--async-scheduling")
    assert (chosen.attention_backend, chosen.enforce_eager, chosen.scheduler.async_scheduling) == ("torch", True, True)
    assert not config("--no-async-scheduling")[1].scheduler.async_scheduling
    with pytest.raises(ValueError, match="attention_backend='flashinfer' needs a CUDA device"):
        config("--attention-backend", "flashinfer")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--attention-backend", "flash"])
    with pytest.raises(ValueError, match="attention_backend"):
        ServerArgs(model="/m", served_model_names=("m",), attention_backend="flash")
    from kernels.attention import selector

    assert ATTENTION_BACKENDS == selector.ATTENTION_BACKENDS  # the CLI's torch-free copy of the names


def test_missing_model_is_a_clear_error_or_the_embedded_default() -> None:
    try:
        path = resolve_model(None)
    except SystemExit as exit_:
        assert "--model is required" in str(exit_.code)
    else:
        from pathlib import Path

        assert Path(path).is_dir()


def test_validation_errors_name_the_field() -> None:
    with pytest.raises(ValidationError) as info:
        ChatCompletionRequest.model_validate({**CHAT, "messages": [{"role": "user", "content": [{"type": "text"}],
                                                                     "name": 5}]})
    error = from_pydantic(info.value)
    assert error.status == 400 and error.param in ("messages[0].name", "messages[0].content[0].text")
    with pytest.raises(ValidationError) as info:
        CompletionRequest.model_validate({"model": "m", "prompt": "x", "logprobs": 21})
    assert from_pydantic(info.value).param == "logprobs"
    accepted = ChatCompletionRequest.model_validate({**CHAT, "brand_new_field": [1], "service_tier": "auto"})
    assert accepted.model_extra == {"brand_new_field": [1], "service_tier": "auto"}


def test_max_tokens_resolution_and_context_wording() -> None:
    assert resolve_max_tokens(None, 10, 100, "max_tokens") == 90
    assert resolve_max_tokens(90, 10, 100, "max_tokens") == 90
    with pytest.raises(APIError) as info:
        resolve_max_tokens(91, 10, 100, "max_completion_tokens")
    assert info.value.param == "max_completion_tokens" and info.value.code == "context_length_exceeded"
    assert "maximum context length is 100 tokens. However, you requested 101 tokens (10 in the messages, 91 in " \
           "the completion)." in info.value.message
    with pytest.raises(APIError) as info:
        resolve_max_tokens(None, 100, 100, "max_tokens")
    assert info.value.code == "context_length_exceeded"


def test_sampling_params_defaults_seeds_and_field_errors() -> None:
    defaults = GenerationDefaults(eos_token_ids=(1,), temperature=0.6, top_p=0.9, top_k=None)
    request = ChatCompletionRequest.model_validate({**CHAT, "n": 3, "seed": 2**64 - 2, "top_k": 5,
                                                    "stop": "END", "stop_token_ids": [7]})
    params = build_sampling_params(request, max_tokens=10, logprobs=None, defaults=defaults, vocab_size=100)
    assert [p.seed for p in params] == [2**64 - 2, 2**64 - 1, 0]  # seed + i, wrapped to uint64
    assert all(p.temperature == 0.6 and p.top_p == 0.9 and p.top_k == 5 and p.n == 1 for p in params)
    assert params[0].stop == ("END",) and params[0].stop_token_ids == (7,) and params[0].max_tokens == 10
    explicit = ChatCompletionRequest.model_validate({**CHAT, "temperature": 0, "top_p": 0.5})
    assert build_sampling_params(explicit, max_tokens=5, logprobs=None, defaults=defaults,
                                 vocab_size=100)[0].is_greedy
    for body, param in (({"min_tokens": 11}, "min_tokens"), ({"stop_token_ids": [100]}, "stop_token_ids"),
                        ({"stop": [""]}, "stop")):
        with pytest.raises(APIError) as info:
            build_sampling_params(ChatCompletionRequest.model_validate({**CHAT, **body}), max_tokens=10,
                                  logprobs=None, defaults=defaults, vocab_size=100)
        assert info.value.status == 400 and info.value.param == param


def test_one_two_five_buckets() -> None:
    assert one_two_five_buckets(131072)[-3:] == [20000, 50000, 100000]
    assert one_two_five_buckets(256) == [1, 2, 5, 10, 20, 50, 100, 200]


def test_api_key_check() -> None:
    args = ServerArgs(model="/m", served_model_names=("m",), api_keys=("k1", "k2"))
    ctx = ServingContext(args, SimpleNamespace(), SimpleNamespace(), SimpleNamespace(), 10)  # type: ignore[arg-type]
    ctx.check_api_key("Bearer k2")
    ctx.check_api_key("bearer  k1 ")
    for header in (None, "", "Bearer", "Bearer k3", "k1", "Basic k1"):
        with pytest.raises(APIError) as info:
            ctx.check_api_key(header)
        assert info.value.status == 401 and info.value.code == "invalid_api_key"
    open_args = ServerArgs(model="/m", served_model_names=("m",))
    ServingContext(open_args, SimpleNamespace(), SimpleNamespace(), SimpleNamespace(), 10).check_api_key(  # type: ignore[arg-type]
        "Bearer EMPTY")
