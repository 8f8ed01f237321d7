"""glm-serve's OpenAI-compatible HTTP server (FastAPI on uvicorn). Entry point: `glm-serve` = `server.cli:main`.

Request path: `app` (routes, auth, body limit) -> `serving_chat` / `serving_completion` (validation, prompt via
`chat_prompt`, caps via `sampling`) -> `context` (admission) -> `generation` (per-completion detokenizer, timings)
-> `async_engine` (THE boundary: the engine thread, per-request queues) -> `sse` / JSON bodies. Around it:
`middleware` (request id, HTTP metrics, one JSON log line), `errors` (the OpenAI envelope), `metrics` (vLLM
names), `graceful_server` (SIGTERM drain), `engine_builder` (ServerArgs -> EngineConfig), `scripted_engine`
(TEST-ONLY replay core, selected by GLM_SERVE_TEST_SCRIPT).
"""
