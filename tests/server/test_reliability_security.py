"""Security: with an API key every route but the probes refuses without it (the route list comes from the app's
own OpenAPI document, so a new route is covered automatically); the key never reaches the logs, even at debug
level; CORS is off without `--cors-origins`; chat templates (the model directory's or a request's) run sandboxed:
hostile ones cannot read a file or run code, and fail as 4xx, never 5xx.

One scripted server (test-only core) with a key, debug logging and `--allow-custom-chat-template`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_harness import ServerProcess, write_script

from server.chat_prompt import build_chat_prompt
from server.errors import APIError
from server.protocol import ChatCompletionRequest
from tokenizer.tokenizer import Tokenizer

KEY = "sk-sec-9f8e7d6c5b4a"
WRONG_KEY = "sk-wrong-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
PUBLIC = {"/health", "/ping"}
CANARY = "CANARY-5518-do-not-leak"
# valid for every POST route (each model allows unknown fields): chat, completions, tokenize, detokenize
ANY_BODY = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "prompt": "hi", "tokens": [1],
            "max_tokens": 2}


@pytest.fixture(scope="module")
def canary_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("secret") / "secret.txt"
    path.write_text(CANARY, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    script = write_script(tmp_path_factory.mktemp("security") / "script.json", replies=[{"text": "Fine."}])
    proc = ServerProcess(tiny_model_dir, "--api-key", KEY, "--log-level", "debug", "--allow-custom-chat-template",
                         "--max-model-len", "256", env={"GLM_SERVE_TEST_SCRIPT": str(script)})
    yield proc
    proc.stop()


def routes(server: ServerProcess) -> list[tuple[str, str]]:
    document = httpx.get(server.url + "/openapi.json", headers=AUTH, timeout=10).json()
    found = [(method.upper(), path.replace("{model_id}", "tiny"))
             for path, operations in document["paths"].items() for method in operations]
    return [*found, ("GET", "/openapi.json"), ("GET", "/docs")]


def test_every_route_but_the_probes_needs_the_key(server: ServerProcess) -> None:
    listed = routes(server)
    assert len(listed) >= 12 and ("GET", "/version") in listed and ("POST", "/tokenize") in listed
    for method, path in listed:
        for headers in ({}, {"Authorization": f"Bearer {WRONG_KEY}"}, {"Authorization": KEY},
                        {"Authorization": f"Basic {KEY}"}, {"X-API-Key": KEY}):
            response = httpx.request(method, server.url + path, headers=headers, timeout=10, json=ANY_BODY)
            if path in PUBLIC:
                assert response.status_code == 200, (method, path)
                continue
            assert response.status_code == 401, (method, path, headers, response.text)
            assert response.json()["error"]["code"] == "invalid_api_key"
        with_key = httpx.request(method, server.url + path, headers=AUTH, timeout=10, json=ANY_BODY)
        assert with_key.status_code == 200, (method, path, with_key.text)


def test_the_key_never_reaches_the_logs(server: ServerProcess) -> None:
    for key in (KEY, WRONG_KEY):
        httpx.post(server.base_url + "/chat/completions", timeout=30, headers={"Authorization": f"Bearer {key}"},
                   json={"model": "tiny", "messages": [{"role": "user", "content": "hi"}]})
    httpx.get(server.url + "/v1/models", headers={"Authorization": KEY}, timeout=10)  # malformed: no scheme
    log = server.log()
    assert '"event":"request"' in log and "DEBUG" in log  # the lines are there, at the most verbose level
    assert KEY not in log and WRONG_KEY not in log
    assert KEY[8:] not in log and WRONG_KEY[8:] not in log  # not even in part


def test_cors_is_off_without_origins(server: ServerProcess) -> None:
    preflight = httpx.options(server.base_url + "/chat/completions", timeout=10, headers={
        "Origin": "http://evil.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert preflight.status_code == 405
    assert not any(name.startswith("access-control-") for name in preflight.headers)
    simple = httpx.get(server.url + "/health", headers={"Origin": "http://evil.example"}, timeout=10)
    assert simple.status_code == 200 and "access-control-allow-origin" not in simple.headers


HOSTILE_TEMPLATES = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.popen('cat SECRET').read() }}",
    "{{ lipsum.__globals__['os'].popen('cat SECRET').read() }}",
    "{{ joiner.__init__.__globals__ }}",
    "{{ self.__init__.__globals__ }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ raise_exception.__globals__['json'] }}",
    "{{ messages.__class__.__base__.__subclasses__() }}",
    "{% set ns = namespace() %}{% set ns.__class__ = 1 %}",
    "{{ messages.append(1) }}",
    "{% include 'SECRET' %}",
    "{% import 'SECRET' as secret %}{{ secret }}",
    "{% extends 'SECRET' %}",
    "{% for i in range(10 ** 7) %}{% endfor %}",
    "{{ 1 / 0 }}",
    "{{ strftime_now.__globals__ }}{{ dict.__globals__ }}{{ (messages | attr('__class__')) }}{{ config }}",
]


@pytest.mark.parametrize("template", HOSTILE_TEMPLATES)
def test_hostile_request_template_is_sandboxed(server: ServerProcess, canary_file: Path, template: str) -> None:
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}],
            "chat_template": template.replace("SECRET", str(canary_file))}
    tokenized = httpx.post(server.url + "/tokenize", json=body, headers=AUTH, timeout=30)
    assert tokenized.status_code in (200, 400), tokenized.text
    if tokenized.status_code == 200:  # rendered: what the model would see holds no secret
        prompt = httpx.post(server.url + "/detokenize", json={"tokens": tokenized.json()["tokens"]}, headers=AUTH,
                            timeout=30).json()["prompt"]
        assert CANARY not in prompt and "<class" not in prompt and "function" not in prompt
    else:
        assert CANARY not in tokenized.text and tokenized.json()["error"]["param"] == "messages"
    chat = httpx.post(server.base_url + "/chat/completions", json=body, headers=AUTH, timeout=30)
    assert chat.status_code in (200, 400) and CANARY not in chat.text  # an empty rendering is a 400 here


@pytest.mark.parametrize("template", HOSTILE_TEMPLATES[:3] + HOSTILE_TEMPLATES[10:14])
def test_hostile_template_in_the_model_directory_is_sandboxed(tiny_model_dir: Path, tmp_path: Path,
                                                             canary_file: Path, template: str) -> None:
    model_dir = tmp_path / "hostile_model"
    shutil.copytree(tiny_model_dir, model_dir)
    (model_dir / "chat_template.jinja").write_text(template.replace("SECRET", str(canary_file)), encoding="utf-8")
    tokenizer = Tokenizer.from_model_dir(model_dir)
    raw = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}
    request = ChatCompletionRequest.model_validate(raw)
    try:
        prompt = build_chat_prompt(request, raw, tokenizer, {})  # what the server runs for every chat request
    except APIError as error:
        assert error.status == 400 and CANARY not in json.dumps(error.body())
        return
    assert CANARY not in prompt.text and "<class" not in prompt.text


def in_process_client(model_dir: Path, **fields: Any) -> Any:
    """The app over a never-started engine: routes that do not reach the engine answer as in production."""
    from fastapi.testclient import TestClient

    from server.app import build_app
    from server.args import ServerArgs
    from server.async_engine import AsyncEngine
    from server.context import ServingContext
    from server.metrics import ServerMetrics

    args = ServerArgs(model=str(model_dir), served_model_names=("tiny",), **fields)
    ctx = ServingContext(args, Tokenizer.from_model_dir(model_dir), AsyncEngine(lambda: None),
                         ServerMetrics("tiny", 256), 256)
    return TestClient(build_app(ctx))  # no lifespan: the engine is never started


def test_custom_templates_stay_refused_everywhere_without_the_flag(tiny_model_dir: Path) -> None:
    """The chat route refused `chat_template` without `--allow-custom-chat-template`; /tokenize did not."""
    client = in_process_client(tiny_model_dir)
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "chat_template": "HELLO {{ 1 }}"}
    refused = client.post("/tokenize", json=body)
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "chat_template"


def test_docs_are_served_unless_disabled(tiny_model_dir: Path) -> None:
    served = in_process_client(tiny_model_dir)
    assert served.get("/openapi.json").json()["info"]["title"] == "glm-serve"
    assert "swagger" in served.get("/docs").text.lower()
    disabled = in_process_client(tiny_model_dir, disable_fastapi_docs=True)
    assert disabled.get("/openapi.json").status_code == 404 and disabled.get("/docs").status_code == 404
