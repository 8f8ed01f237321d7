"""`--model` / `LLM(model=...)`: a checkpoint directory, or a Hugging Face repo id already in the local HF cache.

Nothing is downloaded (these machines may not reach a model hub): a repo id resolves to the snapshot that the
cache's `refs/<revision>` names, under `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub` (the
layout `huggingface-cli download` writes). Anything else is a FileNotFoundError saying where we looked.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def hf_hub_cache() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    return Path.home() / ".cache" / "huggingface" / "hub"


def resolve_model_path(model: str | os.PathLike[str], revision: str = "main") -> Path:
    """The directory to load `model` from: the path itself if it is a directory, else the cached snapshot."""
    path = Path(model)
    if path.is_dir():
        return path
    name = str(model)
    if not _REPO_ID.match(name):
        raise FileNotFoundError(f"model: {name!r} is not a directory")
    repo = hf_hub_cache() / ("models--" + name.replace("/", "--"))
    ref = repo / "refs" / revision
    snapshot = repo / "snapshots" / (ref.read_text().strip() if ref.is_file() else revision)
    if not (snapshot / "config.json").is_file():
        raise FileNotFoundError(
            f"model: {name!r} is neither a directory nor in the Hugging Face cache ({repo} has no snapshot for "
            f"{revision!r}); download it first, e.g. `huggingface-cli download {name}`, or pass a directory")
    return snapshot
