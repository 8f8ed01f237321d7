"""`glm-serve`: the OpenAI-compatible server's command line (vLLM flag names), and `main()`.

Start-up: read the model directory's config and tokenizer (fast, fails early), bind the port, then load the model
in the engine thread (/health answers 503 meanwhile) and print the URL once the engine is ready.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from server.args import (
    API_KEY_ENV,
    ATTENTION_BACKENDS,
    DEFAULT_MAX_BODY_BYTES,
    ServerArgs,
    parse_api_keys,
    parse_size,
)

logger = logging.getLogger("glm_serve")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not JSON: {error}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="glm-serve", description="OpenAI-compatible server for GLM-4.5-family models.")
    p.add_argument("--model", help="model directory (default: the embedded model, when installed)")
    p.add_argument("--served-model-name", nargs="+", help="name(s) clients use in `model`; the first is primary "
                   "(default: the model directory's name)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (0.0.0.0 inside containers)")
    p.add_argument("--port", type=int, default=8000, help="port (0: any free port; the URL line shows it)")
    p.add_argument("--api-key", nargs="+", help=f"accepted bearer key(s); also from ${API_KEY_ENV} (comma-separated)")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--max-model-len", type=_positive_int, help="context length (default: the model's)")
    p.add_argument("--max-num-seqs", type=_positive_int, default=256, help="most requests per engine step")
    p.add_argument("--max-num-batched-tokens", type=_positive_int, default=8192, help="token budget per step")
    p.add_argument("--kv-cache-memory", type=_size, help="KV cache size in bytes (8GiB, 512MB, ...)")
    p.add_argument("--enable-prefix-caching", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--num-speculative-tokens", type=int, default=0, help="MTP draft tokens per step (0: off)")
    p.add_argument("--speculative-disable-by-batch-size", type=_positive_int,
                   help="steps with more running requests than this draft nothing (default: the engine's; README)")
    p.add_argument("--tensor-parallel-size", "-tp", type=_positive_int, default=1,
                   help="split the model across this many GPUs (one process each; under torchrun: WORLD_SIZE)")
    p.add_argument("--enable-expert-parallel", action="store_true",
                   help="place routed experts whole across the tensor-parallel ranks instead of slicing them")
    p.add_argument("--seed", type=int, default=0, help="engine seed for requests without their own")
    p.add_argument("--attention-backend", choices=ATTENTION_BACKENDS, default="auto",
                   help="auto: FlashInfer on CUDA when it imports (fp16/bf16), the C++ kernel on CPU when it builds, "
                        "else the PyTorch paged backend")
    p.add_argument("--enforce-eager", action="store_true", help="CUDA: run decode eagerly, without CUDA graphs")
    p.add_argument("--async-scheduling", action=argparse.BooleanOptionalAction, default=None,
                   help="overlap scheduling of step N+1 with step N on the device (default: on for CUDA, off on CPU)")
    p.add_argument("--max-queued-requests", "--max-num-queued-reqs", type=_positive_int, default=1024,
                   help="waiting + running sequences before 503 server_overloaded")
    p.add_argument("--cors-origins", nargs="*", default=[], help="allowed CORS origins ('*' for any)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error", "critical"])
    p.add_argument("--tool-call-streaming", choices=["exact", "incremental"], default="exact",
                   help="exact: one fragment per finished call; incremental: stream arguments as they come")
    p.add_argument("--reasoning-field", choices=["reasoning_content", "reasoning"], default="reasoning_content",
                   help="the key reasoning goes out under (never both)")
    p.add_argument("--default-chat-template-kwargs", type=_json_object, default={},
                   help='template kwargs for every request, e.g. \'{"enable_thinking": false}\'')
    p.add_argument("--allow-custom-chat-template", action="store_true",
                   help="accept the request field `chat_template`")
    p.add_argument("--shutdown-timeout", type=float, default=30.0,
                   help="on SIGTERM, seconds in-flight requests may run before they are aborted")
    p.add_argument("--heartbeat-timeout", type=float, default=60.0,
                   help="/health turns 503 when the engine loop is silent this long")
    p.add_argument("--metrics-public", action="store_true", help="serve /metrics without the API key")
    p.add_argument("--max-request-body-bytes", type=_size, default=DEFAULT_MAX_BODY_BYTES,
                   help="larger request bodies get 413 before parsing (4MiB, 512kB, ...; default 4 MiB)")
    p.add_argument("--disable-fastapi-docs", action="store_true", help="do not serve /openapi.json and /docs")
    return p


def resolve_model(model: str | None) -> str:
    if model:
        from engine.model_path import resolve_model_path

        try:
            return str(resolve_model_path(model))
        except FileNotFoundError as error:
            raise SystemExit(f"glm-serve: {error}") from None
    try:
        from engine import default_model_path

        return str(default_model_path())
    except (ImportError, ValueError, FileNotFoundError, AttributeError) as error:
        raise SystemExit(f"glm-serve: --model is required ({error})") from None


def args_from_namespace(ns: argparse.Namespace) -> ServerArgs:
    model = resolve_model(ns.model)
    # A repo id is served under its own name, as vLLM does; a directory under the directory's name.
    given_repo_id = ns.model is not None and not Path(ns.model).is_dir()
    names = tuple(ns.served_model_name or (ns.model if given_repo_id else Path(model).name,))
    return ServerArgs(
        model=model, served_model_names=names, host=ns.host, port=ns.port,
        api_keys=parse_api_keys(ns.api_key, os.environ.get(API_KEY_ENV)), dtype=ns.dtype, device=ns.device,
        max_model_len=ns.max_model_len, max_num_seqs=ns.max_num_seqs,
        max_num_batched_tokens=ns.max_num_batched_tokens, kv_cache_memory=ns.kv_cache_memory,
        enable_prefix_caching=ns.enable_prefix_caching, num_speculative_tokens=ns.num_speculative_tokens,
        speculative_disable_by_batch_size=ns.speculative_disable_by_batch_size,
        tensor_parallel_size=ns.tensor_parallel_size, enable_expert_parallel=ns.enable_expert_parallel,
        seed=ns.seed, attention_backend=ns.attention_backend, enforce_eager=ns.enforce_eager,
        async_scheduling=ns.async_scheduling, max_queued_requests=ns.max_queued_requests,
        cors_origins=tuple(ns.cors_origins),
        log_level=ns.log_level, tool_call_streaming=ns.tool_call_streaming, reasoning_field=ns.reasoning_field,
        default_chat_template_kwargs=ns.default_chat_template_kwargs,
        allow_custom_chat_template=ns.allow_custom_chat_template, shutdown_timeout=ns.shutdown_timeout,
        heartbeat_timeout=ns.heartbeat_timeout, metrics_public=ns.metrics_public,
        max_request_body_bytes=ns.max_request_body_bytes, disable_fastapi_docs=ns.disable_fastapi_docs,
    )


def run_server(args: ServerArgs) -> int:
    """Serve until drained (0) or until the engine dies (1)."""
    import uvicorn

    from engine.config import ModelConfig
    from server.app import build_app
    from server.async_engine import AsyncEngine
    from server.context import ServingContext
    from server.engine_builder import build_engine_config, core_factory
    from server.graceful_server import GracefulServer
    from server.metrics import ServerMetrics
    from tokenizer.tokenizer import Tokenizer

    model_config = ModelConfig.from_pretrained(args.model)
    config = build_engine_config(args, model_config)
    if is_torchrun_follower():
        return run_torchrun_follower(config)
    tokenizer = Tokenizer.from_model_dir(args.model)
    max_model_len = config.scheduler.max_model_len
    metrics = ServerMetrics(args.model_name, max_model_len)
    engine = AsyncEngine(core_factory(args, config), metrics, args.enable_prefix_caching)
    ctx = ServingContext(args, tokenizer, engine, metrics, max_model_len)
    print(f"glm-serve: loading {args.model} on {config.device} ({str(config.dtype).removeprefix('torch.')}, "
          f"max_model_len {max_model_len}) ...", flush=True)

    def announce(server: GracefulServer) -> None:
        url = f"http://{args.host}:{server.bound_port()}"

        def when_ready() -> None:
            print(f"glm-serve: serving {', '.join(args.served_model_names)} on {url}/v1 "
                  f"(health: {url}/health)", flush=True)

        engine.add_ready_callback(when_ready)

    uv_config = uvicorn.Config(build_app(ctx), host=args.host, port=args.port, log_level=args.log_level,
                               access_log=False, timeout_graceful_shutdown=5, log_config=None)
    server = GracefulServer(uv_config, ctx, args.shutdown_timeout, on_started=announce)
    server.run()
    return server.exit_code


def is_torchrun_follower() -> bool:
    """Started by torchrun as a rank other than 0: this process follows rank 0 and serves no HTTP."""
    from engine.distributed.parallel_state import torchrun_env

    env = torchrun_env()
    return env is not None and env.rank != 0


def run_torchrun_follower(config) -> int:
    from engine.distributed.worker import torchrun_follower

    torchrun_follower(config)
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    ns = build_parser().parse_args(argv)
    from server.logging import configure_logging

    configure_logging(ns.log_level)
    try:
        args = args_from_namespace(ns)
        code = run_server(args)
    except (ValueError, FileNotFoundError, OSError) as error:
        print(f"glm-serve: error: {error}", file=sys.stderr, flush=True)
        sys.exit(2)
    sys.exit(code)


if __name__ == "__main__":
    main()
