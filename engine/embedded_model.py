"""The model glm-serve ships: a small GLM-4.5-architecture checkpoint trained by scripts/tiny_model/.

`default_model_path()` is what `glm-serve` without `--model` and `LLM()` without `model` load. The directory is
package data, so it resolves from any working directory once glm-serve is installed (editable or not).
"""

from __future__ import annotations

from pathlib import Path

EMBEDDED_MODEL_NAME = "glm-4.5-tiny"
EMBEDDED_MODEL_DIR = Path(__file__).resolve().parent / "embedded" / EMBEDDED_MODEL_NAME
EVAL_CONVERSATIONS = "eval_conversations.jsonl"  # held-out conversations inside the model directory


def default_model_path() -> Path:
    """The embedded checkpoint directory; raises FileNotFoundError naming the missing file if it is incomplete."""
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        if not (EMBEDDED_MODEL_DIR / name).is_file():
            raise FileNotFoundError(f"embedded model file {EMBEDDED_MODEL_DIR / name} is missing "
                                    "(train it with `python -m scripts.tiny_model.train`)")
    return EMBEDDED_MODEL_DIR
