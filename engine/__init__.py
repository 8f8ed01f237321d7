"""glm-serve's inference engine. `from engine import LLM, SamplingParams` (vLLM's offline API).

Exports resolve lazily, so `import engine` stays light (no model, loader or kernel imports until used).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.llm import LLM, default_model_path
    from engine.outputs import CompletionOutput, RequestOutput
    from engine.sampling_params import SamplingParams

__all__ = ["LLM", "SamplingParams", "RequestOutput", "CompletionOutput", "default_model_path"]

_EXPORTS = {
    "LLM": "engine.llm",
    "default_model_path": "engine.llm",
    "SamplingParams": "engine.sampling_params",
    "RequestOutput": "engine.outputs",
    "CompletionOutput": "engine.outputs",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
