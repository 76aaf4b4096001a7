"""Reading ``config.yaml``: YAML -> frozen models, every failure as one ConfigError line."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from xylen.config.schema import XylenConfig
from xylen.errors import ConfigError

_KEY_RE = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)*$")


def _key_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def format_validation_error(exc: ValidationError) -> tuple[str, str]:
    """The first error as (key path, reason), with the offending value where it helps.

    Validators in :mod:`xylen.config.schema` that look at several fields start their
    message with ``"<field>: "``, which is moved into the key path here.
    """
    err = exc.errors(include_url=False)[0]
    loc: tuple[int | str, ...] = tuple(err["loc"])
    reason = str(err["msg"]).removeprefix("Value error, ")
    head, sep, tail = reason.partition(": ")
    if sep and _KEY_RE.match(head):
        # "section.field: ..." is absolute (cross-section check); "field: ..." is relative.
        loc = tuple(head.split(".")) if "." in head else (*loc, head)
        reason = tail
    if err["type"] == "extra_forbidden":
        reason = "unknown key (not part of the config schema; check its spelling and section)"
    elif err["type"] == "missing":
        reason = "required value missing"
    elif "input" in err and err["type"] not in ("value_error", "assertion_error"):
        value = err["input"]
        if not isinstance(value, dict | list):
            reason = f"{reason} (got {value!r})"
    return _key_path(loc) or "(top level)", reason


def duplicate_key(text: str) -> tuple[str, int] | None:
    """The first key given twice in one mapping, as (key path, line), or ``None``.

    PyYAML keeps the last of two equal keys, so a second ``risk:`` section would silently replace
    the first (and with it every limit set there).  The file is composed into nodes first, so the
    key path of the duplicate can be named.
    """
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    stack: list[tuple[yaml.Node, tuple[int | str, ...]]] = [] if root is None else [(root, ())]
    while stack:
        node, loc = stack.pop()
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                key = str(key_node.value)
                if isinstance(key_node, yaml.ScalarNode):
                    if key in seen:
                        return _key_path((*loc, key)), key_node.start_mark.line + 1
                    seen.add(key)
                stack.append((value_node, (*loc, key)))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, (*loc, i)) for i, item in enumerate(node.value))
    return None


def parse_config(data: Any, source: str = "config") -> XylenConfig:
    """Validate already-parsed YAML data (``None`` means an empty file)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("(top level)", f"expected a mapping of sections, got {type(data).__name__}", source)
    try:
        return XylenConfig.model_validate(data)
    except ValidationError as exc:
        key, reason = format_validation_error(exc)
        raise ConfigError(key, reason, source) from None


def load_config(path: str | Path | None = None) -> XylenConfig:
    """Load and validate a config file; ``None`` gives the embedded defaults."""
    if path is None:
        return XylenConfig()
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("(file)", f"{file} does not exist", str(file)) from None
    except OSError as exc:
        raise ConfigError("(file)", f"cannot read {file}: {exc.strerror}", str(file)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1} column {mark.column + 1}" if mark is not None else "unknown position"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError("(yaml)", f"bad YAML at {where}: {problem}", str(file)) from None
    duplicate = duplicate_key(text)
    if duplicate is not None:
        key, line = duplicate
        raise ConfigError(
            key, f"given twice (line {line}); a second value would silently replace the first", str(file)
        )
    return parse_config(data, str(file))
