"""GET /version: package version, model revision (a content hash of the model directory's small files and the
weight files' names and sizes) and build hash (`GLM_SERVE_BUILD`, else the git commit of the source tree)."""

from __future__ import annotations

import hashlib
import os
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

_SMALL_FILES = ("config.json", "generation_config.json", "tokenizer_config.json", "tokenizer.json")


def package_version() -> str:
    try:
        return metadata.version("glm-serve")
    except metadata.PackageNotFoundError:
        return "0.0.0+unknown"


def model_revision(model_dir: str | Path) -> str:
    root = Path(model_dir)
    digest = hashlib.sha256()
    for name in _SMALL_FILES:
        path = root / name
        if path.is_file():
            digest.update(name.encode() + b"\0" + path.read_bytes())
    for path in sorted(root.glob("*.safetensors")):
        digest.update(f"{path.name}:{path.stat().st_size}".encode())
    return digest.hexdigest()[:12]


def build_hash() -> str:
    if os.environ.get("GLM_SERVE_BUILD"):
        return os.environ["GLM_SERVE_BUILD"]
    source = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(source), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


def version_info(model_dir: str | Path) -> dict[str, Any]:
    return {"version": package_version(), "model_revision": model_revision(model_dir), "build": build_hash()}
