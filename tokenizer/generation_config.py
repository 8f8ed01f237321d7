"""The model directory's generation_config.json: stop ids and sampling defaults."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class GenerationDefaults:
    eos_token_ids: tuple[int, ...]
    """`eos_token_id` (an int or a list in the file): every id that ends generation. GLM: three ids."""
    pad_token_id: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None

    @classmethod
    def from_file(cls, path: str | Path) -> GenerationDefaults:
        """Defaults with no eos ids when the file does not exist."""
        path = Path(path)
        if not path.is_file():
            return cls(eos_token_ids=())
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        eos = data.get("eos_token_id")
        eos_ids = (eos,) if isinstance(eos, int) else tuple(int(i) for i in eos or ())
        return cls(
            eos_token_ids=eos_ids,
            pad_token_id=data.get("pad_token_id"),
            temperature=data.get("temperature"),
            top_p=data.get("top_p"),
            top_k=data.get("top_k"),
        )
