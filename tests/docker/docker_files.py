"""A Dockerfile read the way the builder reads it, for checks that need no Docker engine.

Covers what docker/ uses: line continuations, comment lines (also inside continuations), parser directives,
ARG defaults (`${NAME}` expanded in FROM only), JSON (exec) form of ENTRYPOINT/CMD/VOLUME/HEALTHCHECK CMD, ENV
`key=value` pairs. Instructions are those of the final stage (what the image runs).
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration_seconds(text: str) -> float:
    """Docker/Compose durations: '15m', '1m30s', '45s', '500ms'."""
    parts = _DURATION.findall(text)
    if not parts or "".join(value + unit for value, unit in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(value) * _UNIT_SECONDS[unit] for value, unit in parts)


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, ENTRYPOINT, ...
    value: str  # the rest of the logical line, continuations joined with a space
    line: int  # 1-based line where the instruction starts (for messages)


@dataclass(frozen=True)
class HealthCheck:
    options: dict[str, str]  # --interval, --timeout, --start-period, --retries (without the dashes)
    command: tuple[str, ...]  # the CMD in exec form; shell form becomes ("/bin/sh", "-c", text)


@dataclass(frozen=True)
class Dockerfile:
    path: Path
    base_image: str  # the final FROM's image, global ARG defaults expanded
    instructions: tuple[Instruction, ...]  # the final stage, FROM excluded

    @classmethod
    def read(cls, path: Path) -> Dockerfile:
        logical = _logical_lines(path.read_text(encoding="utf-8"))
        global_args: dict[str, str] = {}
        base, stage = "", []
        for ins in logical:
            if ins.keyword == "FROM":
                image = ins.value.split()[0]
                base, stage = re.sub(r"\$\{(\w+)\}", lambda m: global_args.get(m.group(1), ""), image), []
            elif ins.keyword == "ARG" and not base:
                name, _, default = ins.value.partition("=")
                global_args[name.strip()] = default.strip()
            else:
                stage.append(ins)
        if not base:
            raise ValueError(f"{path}: no FROM instruction")
        return cls(path, base, tuple(stage))

    def all(self, keyword: str) -> list[Instruction]:
        return [ins for ins in self.instructions if ins.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        if not found:
            raise KeyError(f"{self.path.name}: no {keyword} instruction")
        return found[-1]

    def exec_form(self, keyword: str) -> tuple[str, ...]:
        """ENTRYPOINT/CMD/VOLUME argv; raises ValueError for shell form (it would run under /bin/sh -c)."""
        ins = self.last(keyword)
        return _json_argv(ins, self.path)

    def arg_default(self, name: str) -> str | None:
        for ins in self.all("ARG"):
            key, _, default = ins.value.partition("=")
            if key.strip() == name:
                return default.strip() or None
        return None

    @property
    def env(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for ins in self.all("ENV"):
            for pair in shlex.split(ins.value):
                key, sep, value = pair.partition("=")
                if not sep:
                    raise ValueError(f"{self.path.name}:{ins.line}: ENV without '=' ({pair!r})")
                out[key] = value
        return out

    @property
    def healthcheck(self) -> HealthCheck:
        ins = self.last("HEALTHCHECK")
        tokens = ins.value.split(None)
        options: dict[str, str] = {}
        while tokens and tokens[0].startswith("--"):
            key, _, value = tokens.pop(0)[2:].partition("=")
            options[key] = value
        rest = ins.value[ins.value.index(tokens[0]):] if tokens else ""
        if not rest.startswith("CMD "):
            raise ValueError(f"{self.path.name}:{ins.line}: HEALTHCHECK without CMD")
        body = rest[len("CMD "):].strip()
        if body.startswith("["):
            command = _json_argv(Instruction("HEALTHCHECK CMD", body, ins.line), self.path)
        else:
            command = ("/bin/sh", "-c", body)
        return HealthCheck(options, command)

    @property
    def copy_sources(self) -> list[str]:
        """Sources of every COPY from the build context (not --from other stages)."""
        sources = []
        for ins in self.all("COPY"):
            words = shlex.split(ins.value)
            if any(w.startswith("--from") for w in words):
                continue
            sources.extend([w for w in words if not w.startswith("--")][:-1])
        return sources


def _logical_lines(text: str) -> list[Instruction]:
    out, buffer, start = [], "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not buffer):
            continue  # NOTE: comment lines inside a continuation are dropped, as the builder does
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer += stripped[:-1].strip() + " "
            continue
        buffer += stripped
        keyword, _, value = buffer.partition(" ")
        out.append(Instruction(keyword.upper(), value.strip(), start))
        buffer = ""
    if buffer:
        raise ValueError(f"continuation at end of file (line {start})")
    return out


def _json_argv(ins: Instruction, path: Path) -> tuple[str, ...]:
    try:
        argv = json.loads(ins.value)
    except ValueError:
        raise ValueError(f"{path.name}:{ins.line}: {ins.keyword} is not in exec (JSON) form: {ins.value!r}") from None
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        raise ValueError(f"{path.name}:{ins.line}: {ins.keyword} must be a JSON list of strings")
    return tuple(argv)
