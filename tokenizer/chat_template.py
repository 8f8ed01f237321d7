"""A model's own Jinja chat template, rendered as transformers renders it.

The environment matches transformers' chat-template environment, so a template renders byte for byte as
`apply_chat_template(..., tokenize=False)` does: ImmutableSandboxedEnvironment (templates come from model
repositories and are untrusted), `trim_blocks` and `lstrip_blocks` on, the loop-controls extension, and the
globals/filters HF templates use: `tojson` with HF semantics (key order kept, no HTML escaping, `ensure_ascii`
off by default, json.dumps separators and `indent`), `raise_exception`, `strftime_now`, a plain `dict` and a
`namespace` that refuses underscore attributes. The tokenizer's special tokens (`eos_token`, ...) are template
variables, and `documents` is defined (None), as in transformers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace

from tokenizer.messages import normalize_messages


class ChatTemplateError(ValueError):
    """The template refused the conversation (`raise_exception`) or failed to render it; an HTTP 400 for the server."""


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | str | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(format: str) -> str:
    return datetime.now().strftime(format)


def _template_dict(*args: Any, **kwargs: Any) -> dict[Any, Any]:
    return dict(*args, **kwargs)


class _SafeNamespace(Namespace):
    # NOTE: underscore attributes on a namespace are the usual first step of a sandbox escape; refuse them.
    def __init__(*args: Any, **kwargs: Any) -> None:
        self, rest = args[0], args[1:]
        attrs = dict(*rest, **kwargs)
        for name in attrs:
            _SafeNamespace._check(name)
        Namespace.__init__(self, attrs)

    def __setitem__(self, name: str, value: Any) -> None:
        _SafeNamespace._check(name)
        Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check(name: Any) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(f"namespace attribute {name!r} is not allowed in chat templates")


MAX_TEMPLATE_REPEAT = 1 << 20  # most items (characters, list entries) one `*` may build
MAX_TEMPLATE_POWER = 1 << 10  # largest exponent of `**`


class _BoundedSandbox(ImmutableSandboxedEnvironment):
    """The sandbox also bounds the two operators that build huge values in one step (`'a' * 10**9`), so a
    template can spend neither the server's memory nor its CPU; jinja2 bounds `range` itself."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int) and abs(right) > MAX_TEMPLATE_POWER:
            raise jinja2.exceptions.SecurityError(f"exponent {right} is over the template limit {MAX_TEMPLATE_POWER}")
        if operator == "*":
            for seq, count in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(count, int) \
                        and len(seq) * count > MAX_TEMPLATE_REPEAT:
                    raise jinja2.exceptions.SecurityError(
                        f"repeating a sequence to {len(seq) * count} items is over the template limit "
                        f"{MAX_TEMPLATE_REPEAT}")
        return super().call_binop(context, operator, left, right)


@lru_cache(maxsize=16)
def _compile(source: str) -> jinja2.Template:
    env = _BoundedSandbox(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    env.globals["dict"] = _template_dict
    env.globals["namespace"] = _SafeNamespace
    return env.from_string(source)


class ChatTemplate:
    """One chat template plus the template variables its tokenizer provides."""

    def __init__(self, source: str, special_tokens: Mapping[str, str] | None = None) -> None:
        self.source = source
        self.special_tokens: dict[str, str] = dict(special_tokens or {})
        try:
            self._template = _compile(source)
        except jinja2.TemplateError as error:
            raise ChatTemplateError(f"invalid chat template: {error}") from error

    @classmethod
    def from_model_dir(cls, model_dir: str | Path, special_tokens: Mapping[str, str] | None = None) -> ChatTemplate:
        """`chat_template.jinja` if the directory has one (transformers' newer layout), else tokenizer_config's."""
        source = find_template_source(Path(model_dir))
        if source is None:
            raise FileNotFoundError(f"no chat template in {model_dir}")
        return cls(source, special_tokens)

    def render(
        self,
        messages: Sequence[Any],
        tools: Sequence[Mapping[str, Any]] | None = None,
        add_generation_prompt: bool = True,
        **kwargs: Any,
    ) -> str:
        """Render OpenAI-style messages (see `tokenizer.messages`); extra kwargs (enable_thinking...) reach the
        template as variables and override the special-token variables. Raises InvalidMessageError or
        ChatTemplateError, both ValueErrors."""
        variables = {
            **self.special_tokens,
            "documents": None,
            **kwargs,
            "messages": normalize_messages(messages),
            "tools": list(tools) if tools is not None else None,
            "add_generation_prompt": add_generation_prompt,
        }
        try:
            return self._template.render(**variables)
        except jinja2.TemplateError as error:
            raise ChatTemplateError(f"chat template error: {error}") from error


def find_template_source(model_dir: Path) -> str | None:
    jinja_file = model_dir / "chat_template.jinja"
    if jinja_file.is_file():
        return jinja_file.read_text(encoding="utf-8")
    config_file = model_dir / "tokenizer_config.json"
    if not config_file.is_file():
        return None
    template = json.loads(config_file.read_text(encoding="utf-8")).get("chat_template")
    if isinstance(template, list):  # named templates: [{"name": "default", "template": ...}, ...]
        named = {item.get("name"): item.get("template") for item in template if isinstance(item, Mapping)}
        template = named.get("default")
    return template if isinstance(template, str) else None
